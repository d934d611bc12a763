"""Transactional outbox: the business write and its event commit together.

`add_event` puts an encoded record in the caller's session; `OutboxRelay` publishes
pending rows in id order with an idempotent producer (acks=all) and marks them sent.

Ordering: several relays that each take `FOR UPDATE SKIP LOCKED` batches could publish
two rows of one key out of order. So only one relay per schema is active at a time: it
holds a PostgreSQL advisory lock on a dedicated connection; the others wait as standbys
and take over within a second when the active one dies (its connection closes, the lock
goes). The batch query still uses SKIP LOCKED so that, even in a split-brain moment, no
row is published twice by two relays in normal operation.

Latency: `add_events` also NOTIFYs the schema's outbox channel in the same transaction;
PostgreSQL delivers it on commit only, and the active relay LISTENs on a dedicated
asyncpg connection, so a committed event is picked up at once instead of at the next
poll. The poll stays (every `poll_interval_s`) as the fallback: a notification lost
while the LISTEN connection is down, or a row written without one, still goes out, and a
lost LISTEN connection is reconnected in the background while the relay polls.

A crash after the broker acknowledged a batch and before the rows were marked sent
publishes that batch again on restart: consumers are idempotent (see shared.consumer).

A row the broker can never take (too large, an invalid topic name, a topic the producer
may not write) is *parked* instead of retried forever: moved to `outbox_parked` with the
reason, copied to `<topic>.dlq` (whole if it fits, else its envelope without `data`),
counted in `muster_outbox_parked_total` and logged; the rows behind it go on. Anything
else (broker down, timeouts, a topic not created yet) fails the whole batch, which is
retried in order. See docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)
from prometheus_client import Counter
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from shared.events.catalog import EventData, make_envelope
from shared.events.envelope import Envelope, encode
from shared.events.topics import dead_letter_topic
from shared.observability import (
    EVENTS_PUBLISHED,
    OUTBOX_PENDING,
    OUTBOX_PUBLISH_SECONDS,
    get_logger,
)

log = get_logger(__name__)

# Here rather than in shared.observability so the relay's whole parking story is one
# module; the name follows the other muster_outbox_* metrics.
OUTBOX_PARKED = Counter(
    "muster_outbox_parked_total",
    "Outbox rows the broker can never take, parked and dead-lettered instead of published",
    ["topic", "reason"],
)

# The same header names as shared.consumer's dead letters (that module imports this one,
# so the names are spelled here rather than imported), plus the relay's own.
DLQ_HEADER_REASON = "muster.dlq.reason"
DLQ_HEADER_ERROR = "muster.dlq.error"
DLQ_HEADER_CONSUMER = "muster.dlq.consumer"
DLQ_HEADER_TOPIC = "muster.dlq.topic"
DLQ_HEADER_TRUNCATED = "muster.dlq.truncated"
DLQ_HEADER_ORIGINAL_BYTES = "muster.dlq.original_bytes"
#: `muster.dlq.reason` of a record the relay could not publish
PARKED_REASON = "unpublishable"

#: errors that say *this record* can never be written, however often it is retried; an
#: unknown topic is not among them: at a first start or during an outage the producer
#: cannot tell "not created yet" or "broker unreachable" from "never will exist", and
#: parking would divert a whole stream (see docs/reliability.md)
_UNPUBLISHABLE: dict[type[BaseException], str] = {
    MessageSizeTooLargeError: "too_large",
    RecordListTooLargeError: "too_large",
    InvalidTopicError: "invalid_topic",
    TopicAuthorizationFailedError: "topic_not_authorized",
    CorruptRecordException: "corrupt_record",
    UnsupportedForMessageFormatError: "unsupported_format",
    # the producer's own checks of a record it cannot serialise (a value or header that
    # is not bytes): a bug in what was written, not a state of the cluster
    TypeError: "not_serializable",
    ValueError: "not_serializable",
    AssertionError: "not_serializable",
}


def unpublishable_reason(error: BaseException) -> str | None:
    """Why a record can never be published (`too_large`, ...), or None when the error may
    pass (broker down, timeout, leader change): then the batch is retried in order."""
    for kind, reason in _UNPUBLISHABLE.items():
        if isinstance(error, kind):
            return reason
    return None


def truncated_envelope(value: bytes | None) -> bytes | None:
    """A structured CloudEvent without its `data`: enough to find the event (id, type,
    subject, correlation) when the whole record is too large for the dead-letter topic."""
    if value is None:
        return None
    try:
        envelope = json.loads(value)
    except ValueError:
        return None
    if not isinstance(envelope, dict):
        return None
    envelope.pop("data", None)
    envelope.pop("data_base64", None)
    return json.dumps(envelope, separators=(",", ":")).encode()


#: tables every service has in its own schema (created by its first migration)
shared_metadata = MetaData()

outbox_table = Table(
    "outbox",
    shared_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("topic", Text, nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=True),
    Column("headers", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("event_type", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Index("outbox_pending_idx", "id", postgresql_where=text("published_at IS NULL")),
)

#: rows the relay could never publish, kept whole with the reason until an operator acts.
#: In `shared_metadata`, so a fresh schema gets it from the first migration; the relay
#: creates it in a schema migrated before it existed (no three-service migration needed).
outbox_parked_table = Table(
    "outbox_parked",
    shared_metadata,
    Column("id", BigInteger, primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("topic", Text, nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=True),
    Column("headers", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("event_type", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("reason", Text, nullable=False),
    Column("error", Text, nullable=False),
)

processed_events_table = Table(
    "processed_events",
    shared_metadata,
    Column("consumer", Text, primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


async def add_event(
    session: AsyncSession,
    data: EventData,
    *,
    source: str,
    correlationid: str | None = None,
    causationid: str | None = None,
) -> Envelope:
    """Add an event to the caller's transaction; it is published once that commits."""
    envelopes = await add_events(
        session, [data], source=source, correlationid=correlationid, causationid=causationid
    )
    return envelopes[0]


async def add_events(
    session: AsyncSession,
    events: list[EventData],
    *,
    source: str,
    correlationid: str | None = None,
    causationid: str | None = None,
) -> list[Envelope]:
    """Add many events in one statement (bulk import); same guarantees as `add_event`."""
    envelopes: list[Envelope] = []
    rows: list[dict[str, Any]] = []
    for data in events:
        envelope = make_envelope(
            data, source=source, correlationid=correlationid, causationid=causationid
        )
        record = encode(envelope)
        envelopes.append(envelope)
        rows.append(
            {
                "event_id": envelope.id,
                "topic": data.topic,
                "key": record.key,
                "value": record.value,
                "headers": [[k, v.decode("latin-1")] for k, v in record.headers],
                "event_type": envelope.type,
            }
        )
    if rows:
        await session.execute(outbox_table.insert(), rows)
        await _notify_relay(session)
    return envelopes


#: the outbox columns `copy_events` fills (id and created_at come from their defaults)
_COPY_COLUMNS = ("event_id", "topic", "key", "value", "headers", "event_type")


async def copy_events(
    session: AsyncSession, events: list[EventData], *, source: str
) -> list[Envelope]:
    """Add many events with one `COPY` (tens of thousands of snapshots of a CSV import):
    the same rows, ids in list order and wake-up as `add_events`, in the caller's
    transaction."""
    envelopes: list[Envelope] = []
    records: list[tuple[Any, ...]] = []
    # every structured record has the same headers: their JSON text once, not once a row
    headers_json: dict[tuple[tuple[str, bytes], ...], str] = {}
    for data in events:
        envelope = make_envelope(data, source=source)
        record = encode(envelope)
        envelopes.append(envelope)
        headers = headers_json.get(record.headers)
        if headers is None:
            # jsonb goes over COPY as its JSON text (SQLAlchemy's codec on the connection)
            headers = json.dumps([[k, v.decode("latin-1")] for k, v in record.headers])
            headers_json[record.headers] = headers
        records.append((envelope.id, data.topic, record.key, record.value, headers, envelope.type))
    if records:
        driver = await driver_connection(session)
        await driver.copy_records_to_table(
            outbox_table.name, records=records, columns=_COPY_COLUMNS
        )
        await _notify_relay(session)
    return envelopes


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session's transaction (for `COPY`). SQLAlchemy
    begins the driver's transaction at the first statement, so one is run if none has:
    a COPY outside the transaction would commit by itself."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    if not driver.is_in_transaction():
        await session.execute(text("SELECT 1"))
    if not driver.is_in_transaction():
        raise RuntimeError("COPY outside a transaction")
    return driver


async def add_tombstone(session: AsyncSession, topic: str, key: str, *, event_id: str) -> None:
    """Add a null-value record (erasure on a compacted topic) to the caller's transaction."""
    await session.execute(
        outbox_table.insert(),
        [
            {
                "event_id": event_id,
                "topic": topic,
                "key": key.encode(),
                "value": None,
                "headers": [],
                "event_type": "tombstone",
            }
        ],
    )
    await _notify_relay(session)


#: PostgreSQL refuses a NOTIFY channel of NAMEDATALEN (64) bytes or more
_CHANNEL_MAX = 63
_CHANNEL_PREFIX = "muster_outbox_"

# The channel is derived from the transaction's own schema (`search_path`, set by
# shared.db), so `add_events` needs no schema argument and a test schema never wakes
# another schema's relay. Schema names are ASCII (shared.db checks them): characters
# and bytes agree, and `left` truncates exactly as `outbox_channel` does.
_NOTIFY_OUTBOX = text(
    f"SELECT pg_notify(left('{_CHANNEL_PREFIX}' || current_schema(), {_CHANNEL_MAX}), '')"
)


def outbox_channel(schema: str) -> str:
    """The NOTIFY channel a commit with outbox rows in `schema` wakes its relay on."""
    return (_CHANNEL_PREFIX + schema)[:_CHANNEL_MAX]


async def _notify_relay(session: AsyncSession) -> None:
    # One NOTIFY per transaction is enough (PostgreSQL folds identical ones); it is sent
    # on commit and never for a rollback, so the relay wakes only for rows it can see.
    await session.execute(_NOTIFY_OUTBOX)


def _kafka_headers(stored: list[list[str]] | None) -> list[tuple[str, bytes]]:
    return [(k, v.encode("latin-1")) for k, v in (stored or [])]


#: one batch (read, publish, mark; and the lock check) ends within this or fails and goes
#: again (a normal batch of 500 takes well under a second); longer than the statement
#: timeout (`MUSTER_DB_STATEMENT_TIMEOUT_S`, 30 s), so a statement normally ends by
#: asyncpg's own timeout, which leaves the connection in a known state, not by this
#: cancellation
BATCH_DEADLINE_S = 45.0
#: how long a relay waits for its LISTEN task to stop at the end of its term
LISTENER_STOP_S = 5.0


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"muster-outbox:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class OutboxRelay:
    """Publishes a schema's outbox. Run one or more per schema: one is active at a time."""

    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        *,
        schema: str,
        service: str,
        topic_prefix: str = "",
        batch_size: int = 500,
        poll_interval_s: float = 0.05,
        fault_pause_after_publish_s: float = 0.0,
        retention_s: float = 24 * 3600,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._schema = schema
        self._service = service
        self._prefix = topic_prefix
        self._batch_size = batch_size
        self._poll = poll_interval_s
        self._fault_pause = fault_pause_after_publish_s
        self._retention_s = retention_s
        self._stopping = asyncio.Event()
        #: set by a NOTIFY from a committed outbox write (and on each LISTEN (re)connect)
        self._woken = asyncio.Event()
        #: True while the LISTEN connection is up; otherwise the relay only polls
        self.listening = False
        self.is_active = False
        self.published = 0
        self.parked = 0
        self._parked_table_ready = False

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Wait for leadership, then publish until stopped. Survives database outages."""
        while not self._stopping.is_set():
            try:
                async with self._engine.connect() as lock_conn:
                    async with asyncio.timeout(BATCH_DEADLINE_S):
                        locked = await self._try_lock(lock_conn)
                    if not locked:
                        self.is_active = False
                        await self._sleep(1.0)
                        continue
                    self.is_active = True
                    log.info("outbox relay active", schema=self._schema)
                    try:
                        await self._publish_loop(lock_conn)
                    finally:
                        self.is_active = False
                        with contextlib.suppress(Exception):
                            key = {"k": _lock_key(self._schema)}
                            await lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), key)
                            await lock_conn.commit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay error, retrying", error=str(exc), schema=self._schema)
                await self._sleep(1.0)

    async def _try_lock(self, conn: AsyncConnection) -> bool:
        result = await conn.execute(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": _lock_key(self._schema)}
        )
        await conn.commit()
        return bool(result.scalar())

    async def _publish_loop(self, lock_conn: AsyncConnection) -> None:
        term_over = asyncio.Event()
        listener = asyncio.create_task(
            self._listen(term_over), name=f"outbox-listen-{self._schema}"
        )
        try:
            await self._publish_until_stopped(lock_conn)
        finally:
            # The listener must not hold up the relay: on Python 3.11 `asyncio.wait_for`
            # can swallow a cancellation that races with what it waits for (the LISTEN
            # connection ending, as it does when PostgreSQL stops), and a relay awaiting
            # that listener without limit published nothing again. The event ends its
            # loop even if the cancellation is lost; the wait is bounded regardless.
            term_over.set()
            listener.cancel()
            await asyncio.wait({listener}, timeout=LISTENER_STOP_S)
            if not listener.done():
                log.warning("outbox LISTEN task slow to stop; going on", schema=self._schema)
            self.listening = False

    async def _publish_until_stopped(self, lock_conn: AsyncConnection) -> None:
        last_housekeeping = 0.0
        while not self._stopping.is_set():
            # cleared *before* reading the outbox: a commit notified while the batch runs
            # leaves the event set, so the wait below returns at once
            self._woken.clear()
            # a statement on a connection PostgreSQL dropped mid-statement can wait for
            # ever (seen when it stopped during a batch's UPDATE, and during the lock
            # check: nothing of the service was published for minutes); past the deadline
            # the iteration fails, the relay lets its connections go and starts again
            async with asyncio.timeout(BATCH_DEADLINE_S):
                count = await self.publish_batch()
                now = time.monotonic()
                if now - last_housekeeping > 5.0:
                    last_housekeeping = now
                    await self._housekeeping()
                    # the lock connection must still be alive for us to still be the only
                    # relay
                    await lock_conn.execute(text("SELECT 1"))
            if count == 0:
                await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        """Until a NOTIFY, the poll interval, or stop, whichever comes first."""
        woken = asyncio.ensure_future(self._woken.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait(
                {woken, stopping}, timeout=self._poll, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            woken.cancel()
            stopping.cancel()

    def _listen_dsn(self) -> str:
        url = self._engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    async def _listen(self, term_over: asyncio.Event) -> None:
        """Keep a LISTEN connection for the active relay's whole term; reconnect (with
        backoff) when it is lost, polling meanwhile. `asyncio.timeout`, not `wait_for`:
        see `_publish_loop`."""
        channel = outbox_channel(self._schema)
        failures = 0
        while not self._stopping.is_set() and not term_over.is_set():
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                async with asyncio.timeout(LISTENER_STOP_S * 2):
                    conn = await asyncpg.connect(
                        self._listen_dsn(), server_settings={"application_name": channel}
                    )
                conn.add_termination_listener(lambda _conn, ended=lost: ended.set())
                await conn.add_listener(channel, lambda *_args: self._woken.set())
                self.listening = True
                failures = 0
                # rows committed while no one was listening: look now, not at the next poll
                self._woken.set()
                while not lost.is_set() and not conn.is_closed() and not term_over.is_set():
                    # a half-open socket raises no termination: probe it now and then
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(5.0):
                            await lost.wait()
                    if not lost.is_set():
                        async with asyncio.timeout(5.0):
                            await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning(
                    "outbox LISTEN connection lost: polling until it is back",
                    schema=self._schema,
                    error=type(exc).__name__,
                )
            finally:
                self.listening = False
                if conn is not None:
                    # terminate, not close: close waits for the server, which may be gone
                    conn.terminate()
            if not term_over.is_set():
                await self._sleep(min(30.0, 0.5 * 2 ** min(failures, 6)), term_over)

    async def publish_batch(self) -> int:
        """Publish one batch of pending rows in id order; return how many rows left the
        outbox (published, or parked because the broker can never take them)."""
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, event_id, topic, key, value, headers, event_type, created_at "
                        "FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT :n "
                        "FOR UPDATE SKIP LOCKED"
                    ),
                    {"n": self._batch_size},
                )
            ).all()
            if not rows:
                return 0
            sent: list[tuple[Row[Any], asyncio.Future[Any]]] = []
            refused: list[tuple[Row[Any], str, BaseException]] = []
            for row in rows:
                try:
                    future = await self._producer.send(
                        self._prefix + row.topic,
                        value=row.value,
                        key=row.key,
                        headers=_kafka_headers(row.headers),
                    )
                except Exception as exc:
                    # the producer refuses some records before they are queued (size,
                    # serialisation): park those, keep the order of the others
                    reason = unpublishable_reason(exc)
                    if reason is None:
                        raise
                    refused.append((row, reason, exc))
                    continue
                sent.append((row, future))
            # the idempotent producer keeps per-partition order; wait until all are acked
            results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
            published: list[Row[Any]] = []
            for (row, _), result in zip(sent, results, strict=True):
                if not isinstance(result, BaseException):
                    published.append(row)
                    continue
                reason = unpublishable_reason(result)
                if reason is None:
                    # a failure that may pass: nothing of the batch is marked, the whole
                    # batch goes again in order (what was acknowledged is published twice,
                    # which consumers absorb)
                    raise result
                refused.append((row, reason, result))
            if self._fault_pause:
                log.warning("outbox fault pause: published, not marked", rows=len(rows))
                await asyncio.sleep(self._fault_pause)
            refused.sort(key=lambda item: item[0].id)
            for row, reason, error in refused:
                await self._dead_letter(row, reason, error)
            if refused:
                await self._park(conn, refused)
            now = datetime.now(UTC)
            await conn.execute(
                text("UPDATE outbox SET published_at = :now WHERE id = ANY(:ids)"),
                {"now": now, "ids": [row.id for row in published]},
            )
        for row in published:
            OUTBOX_PUBLISH_SECONDS.labels(self._service).observe(
                max(0.0, (now - row.created_at).total_seconds())
            )
            EVENTS_PUBLISHED.labels(self._prefix + row.topic, row.event_type).inc()
        for row, reason, error in refused:
            OUTBOX_PARKED.labels(self._prefix + row.topic, reason).inc()
            # ids, type and size only: the record itself may carry personal data
            log.error(
                "outbox row parked: the broker can never take it",
                schema=self._schema,
                outbox_id=row.id,
                event_id=row.event_id,
                event_type=row.event_type,
                topic=self._prefix + row.topic,
                value_bytes=len(row.value or b""),
                reason=reason,
                error=type(error).__name__,
            )
        self.published += len(published)
        self.parked += len(refused)
        return len(rows)

    async def _dead_letter(self, row: Row[Any], reason: str, error: BaseException) -> None:
        """Copy a parked row to its topic's `.dlq`: whole when the broker takes it, else the
        envelope without `data` (the whole row stays in `outbox_parked`)."""
        topic = self._prefix + row.topic
        headers = [
            (k, v) for k, v in _kafka_headers(row.headers) if not k.startswith("muster.dlq.")
        ]
        headers += [
            (DLQ_HEADER_REASON, PARKED_REASON.encode()),
            (DLQ_HEADER_ERROR, f"{reason}: {type(error).__name__}: {error}"[:2000].encode()),
            (DLQ_HEADER_CONSUMER, f"outbox-relay:{self._service}".encode()),
            (DLQ_HEADER_TOPIC, topic.encode()),
        ]
        try:
            await self._producer.send_and_wait(
                dead_letter_topic(topic), value=row.value, key=row.key, headers=headers
            )
            return
        except Exception as exc:
            if unpublishable_reason(exc) is None:
                raise
        short = [(k, v) for k, v in headers if k.startswith("muster.dlq.")] + [
            (DLQ_HEADER_TRUNCATED, b"true"),
            (DLQ_HEADER_ORIGINAL_BYTES, str(len(row.value or b"")).encode()),
        ]
        await self._producer.send_and_wait(
            dead_letter_topic(topic),
            value=truncated_envelope(row.value),
            key=row.key,
            headers=short,
        )

    async def _park(
        self, conn: AsyncConnection, refused: list[tuple[Row[Any], str, BaseException]]
    ) -> None:
        """Move the rows to `outbox_parked`, in the batch's transaction."""
        if not self._parked_table_ready:
            await conn.run_sync(outbox_parked_table.create, checkfirst=True)
            self._parked_table_ready = True
        await conn.execute(
            outbox_parked_table.insert(),
            [
                {
                    "id": row.id,
                    "event_id": row.event_id,
                    "topic": row.topic,
                    "key": row.key,
                    "value": row.value,
                    "headers": row.headers or [],
                    "event_type": row.event_type,
                    "created_at": row.created_at,
                    "reason": reason,
                    "error": f"{type(error).__name__}: {error}"[:2000],
                }
                for row, reason, error in refused
            ],
        )
        await conn.execute(
            text("DELETE FROM outbox WHERE id = ANY(:ids)"),
            {"ids": [row.id for row, _, _ in refused]},
        )

    async def _housekeeping(self) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                text(
                    "DELETE FROM outbox WHERE published_at IS NOT NULL "
                    "AND published_at < now() - make_interval(secs => :s)"
                ),
                {"s": self._retention_s},
            )
            pending = (
                await conn.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
            ).scalar_one()
        OUTBOX_PENDING.labels(self._service).set(pending)

    async def _sleep(self, seconds: float, also: asyncio.Event | None = None) -> None:
        """Until `seconds` pass, the relay stops, or `also` is set."""
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if also is not None:
            waits.append(asyncio.ensure_future(also.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


async def _run_standalone() -> None:
    """A relay on its own (no service around it): `python -m shared.outbox`."""
    from shared.db import make_engine
    from shared.kafka import new_producer
    from shared.settings import MusterSettings

    settings = MusterSettings()
    engine = make_engine(
        settings.database_url,
        settings.schema_name,
        pool_size=2,
        statement_timeout_s=settings.db_statement_timeout_s,
        connect_timeout_s=settings.db_connect_timeout_s,
    )
    producer = new_producer(settings.kafka_bootstrap_servers, "muster-outbox-relay")
    await producer.start()
    relay = OutboxRelay(
        engine,
        producer,
        schema=settings.schema_name,
        service=settings.service_name,
        topic_prefix=settings.topic_prefix,
        batch_size=settings.outbox_batch_size,
        poll_interval_s=settings.outbox_poll_interval_s,
        fault_pause_after_publish_s=settings.outbox_fault_pause_after_publish_s,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, relay.stop)
    try:
        await relay.run()
    finally:
        await producer.stop()
        await engine.dispose()


if __name__ == "__main__":
    from shared.observability import configure_logging

    configure_logging()
    asyncio.run(_run_standalone())
