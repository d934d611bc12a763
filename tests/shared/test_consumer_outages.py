"""An outage of the infrastructure a handler needs makes its record wait, however long;
only poison records (bad data, handler bugs) go to the dead-letter topic.

The outage is real: the consumer reaches PostgreSQL through a TCP proxy that the test
closes (connections refused, open ones cut) and opens again, so the handler sees the
errors asyncpg and SQLAlchemy raise when a database goes away."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
import redis.exceptions
import sqlalchemy.exc
from aiokafka import errors as kafka_errors
from faststream.kafka import KafkaBroker
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.consumer import Delivery, EventConsumer, backoff_delay, is_transient, subscribe
from shared.db import make_engine, make_sessionmaker
from shared.events import make_envelope
from shared.events.envelope import decode
from shared.events.responses import ResponseReceived
from shared.events.topics import RESPONSES, dead_letter_topic
from shared.kafka import new_producer
from tests.shared.flow import create_tables, record_applied, wait_for
from tests.support.kafka import publish, read_records

# --- the classification, on the exceptions the libraries really raise -----------------


def _wrapped_by_sqlalchemy(driver_error: Exception) -> Exception:
    """What SQLAlchemy raises around a driver error (it chains with `raise ... from`)."""
    try:
        try:
            raise driver_error
        except Exception as exc:
            raise sqlalchemy.exc.DBAPIError("SELECT 1", None, exc) from exc
    except sqlalchemy.exc.DBAPIError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        TimeoutError(),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.InterfaceError("connection is closed"),
        sqlalchemy.exc.OperationalError("SELECT 1", None, Exception("server closed")),
        _wrapped_by_sqlalchemy(asyncpg.ConnectionDoesNotExistError("closed")),
        _wrapped_by_sqlalchemy(ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        httpx.ConnectError("All connection attempts failed"),
        httpx.ReadTimeout("timed out"),
        kafka_errors.KafkaConnectionError("No connection to node"),
        kafka_errors.KafkaTimeoutError(),
        kafka_errors.NotLeaderForPartitionError(),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_infrastructure_errors_are_transient(exc: Exception) -> None:
    assert is_transient(exc)


def test_a_dropped_connection_reported_by_sqlalchemy_is_transient() -> None:
    invalidated = sqlalchemy.exc.DBAPIError(
        "SELECT 1", None, Exception("gone"), connection_invalidated=True
    )
    assert is_transient(invalidated)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("no such section"),
        KeyError("member_id"),
        RuntimeError("downstream refused"),
        _wrapped_by_sqlalchemy(asyncpg.UniqueViolationError("duplicate key")),
        sqlalchemy.exc.IntegrityError("INSERT", None, Exception("null value")),
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key"),
        kafka_errors.MessageSizeTooLargeError(),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_bugs_and_bad_data_are_poison(exc: Exception) -> None:
    assert not is_transient(exc)


def test_a_bug_raised_while_handling_an_outage_is_still_a_bug() -> None:
    """The implicit context is not followed: the handler chose to say the data is bad."""
    try:
        try:
            raise ConnectionResetError(errno.ECONNRESET, "reset")
        except ConnectionResetError:
            raise ValueError("malformed area")  # noqa: B904 - the point of the test
    except ValueError as exc:
        assert not is_transient(exc)


async def test_a_terminated_database_session_is_transient(infra, schema) -> None:
    """What a failover looks like to a handler: its backend is terminated mid-transaction."""
    engine = make_engine(infra.database_url, schema, pool_size=1)
    admin = make_engine(infra.database_url, schema, pool_size=1)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            async with admin.connect() as admin_conn:
                await admin_conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            with pytest.raises(Exception) as raised:
                await conn.execute(text("SELECT 1"))
        assert is_transient(raised.value), repr(raised.value)
    finally:
        await engine.dispose()
        await admin.dispose()


@given(
    failures=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=10),
    cap=st.floats(min_value=0.01, max_value=600),
    jitter=st.floats(min_value=0, max_value=1),
)
def test_backoff_stays_within_half_and_all_of_its_capped_ceiling(
    failures: int, base: float, cap: float, jitter: float
) -> None:
    delay = backoff_delay(failures, base_s=base, cap_s=cap, jitter=jitter)
    ceiling = min(cap, base * 2 ** min(failures - 1, 62))
    assert ceiling / 2 - 1e-9 <= delay <= ceiling + 1e-9
    assert delay <= cap + 1e-9


@given(failures=st.integers(min_value=1, max_value=100))
def test_backoff_ceiling_never_shrinks_as_failures_grow(failures: int) -> None:
    now = backoff_delay(failures, base_s=0.2, cap_s=30, jitter=1.0)
    later = backoff_delay(failures + 1, base_s=0.2, cap_s=30, jitter=1.0)
    assert later >= now


# --- a real outage under a real consumer ----------------------------------------------


class DatabaseLink:
    """A TCP proxy in front of PostgreSQL that the test can cut and restore."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def up(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Refuse new connections and cut every open one, as a failed-over database does."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}


@contextlib.asynccontextmanager
async def database_link(database_url: str) -> AsyncIterator[tuple[DatabaseLink, str]]:
    url = make_url(database_url)
    link = DatabaseLink(url.host or "127.0.0.1", url.port or 5432)
    await link.up()
    try:
        yield link, url.set(host="127.0.0.1", port=link.port).render_as_string(hide_password=False)
    finally:
        await link.down()


@contextlib.asynccontextmanager
async def consuming(
    bootstrap: str,
    database_url: str,
    schema: str,
    topic: str,
    handlers: dict,  # type: ignore[type-arg]
    group: str,
    *,
    poll_hold_s: float = 60.0,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A real consumer group with the production retry settings (4 attempts from 0.2 s:
    about two seconds before a failing handler's record is dead-lettered)."""
    engine = make_engine(database_url, schema, pool_size=2)
    producer = new_producer(bootstrap, "test-outages")
    await producer.start()
    broker = KafkaBroker(bootstrap)
    consumer = EventConsumer(
        name=group,
        handlers=handlers,
        producer=producer,
        sessionmaker=make_sessionmaker(engine),
        max_attempts=4,
        retry_base_s=0.2,
        transient_retry_max_s=1.0,
        poll_hold_s=poll_hold_s,
    )
    subscribe(broker, consumer, [topic])
    await broker.start()
    try:
        yield make_sessionmaker(engine)
    finally:
        await broker.stop()
        await producer.stop()
        await engine.dispose()


def _transient_retries(consumer: str) -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "muster_consumer_transient_retries":
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels["consumer"] == consumer:
                    total += sample.value
    return total


def _response(emergency_id: uuid.UUID, answer: str = "accepted") -> ResponseReceived:
    return ResponseReceived(
        emergency_id=emergency_id,
        member_id=uuid.uuid4(),
        alert_id=uuid.uuid4(),
        answer=answer,  # type: ignore[arg-type]
        channel="sms",
        responded_at=datetime.now(UTC),
    )


async def _applied_in_order(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(text("SELECT event_id FROM applied ORDER BY id"))
        return [event_id for (event_id,) in rows.all()]


async def test_a_database_outage_longer_than_the_retry_budget_loses_nothing(
    infra, topics, schema
) -> None:
    direct = make_engine(infra.database_url, schema, pool_size=2)
    await create_tables(direct)
    observer = make_sessionmaker(direct)
    emergency = uuid.uuid4()
    first = make_envelope(_response(emergency), source="test")
    second = make_envelope(_response(emergency, "declined"), source="test")
    group = f"g-{uuid.uuid4().hex[:8]}"

    async with database_link(infra.database_url) as (link, linked_url):
        await link.down()
        # one key, one partition: `second` waits behind `first`
        await publish(infra.kafka_bootstrap, topics(RESPONSES), [first, second])
        async with consuming(
            infra.kafka_bootstrap,
            linked_url,
            schema,
            topics(RESPONSES),
            {ResponseReceived.event_type: record_applied},
            group,
            # short holds, so the outage also crosses several polls of the consumer
            poll_hold_s=1.5,
        ):

            async def failing() -> bool:
                return _transient_retries(group) >= 1

            assert await wait_for(failing, timeout_s=60)
            # more than twice the old budget (4 attempts from 0.2 s: about 2 s)
            await asyncio.sleep(5.0)
            assert await _applied_in_order(observer) == []
            assert _transient_retries(group) >= 3
            dead_during = await read_records(
                infra.kafka_bootstrap,
                [dead_letter_topic(topics(RESPONSES))],
                until=lambda rs: len(rs) >= 1,
                timeout_s=3,
            )
            assert dead_during == []

            await link.up()

            async def both_applied() -> bool:
                return len(await _applied_in_order(observer)) >= 2

            assert await wait_for(both_applied, timeout_s=60)
            await asyncio.sleep(1.0)  # a duplicate would show up now
            assert await _applied_in_order(observer) == [first.id, second.id]

    dead = await read_records(
        infra.kafka_bootstrap,
        [dead_letter_topic(topics(RESPONSES))],
        until=lambda rs: len(rs) >= 1,
        timeout_s=3,
    )
    assert dead == []
    await direct.dispose()


async def test_a_poison_record_is_dead_lettered_and_the_next_applied(infra, topics, schema) -> None:
    engine = make_engine(infra.database_url, schema, pool_size=2)
    await create_tables(engine)
    attempts: list[str] = []
    emergency = uuid.uuid4()
    buggy = make_envelope(_response(emergency, "declined"), source="test")
    violating = make_envelope(_response(emergency, "accepted"), source="test")
    good = make_envelope(_response(emergency, "accepted"), source="test")

    async def handler(delivery: Delivery) -> None:
        attempts.append(delivery.envelope.id)
        if delivery.envelope.id == buggy.id:
            raise KeyError("member_id")  # a bug: retrying cannot help
        if delivery.envelope.id == violating.id:
            # a constraint violation: the database is there and says no
            await delivery.db.execute(
                text("INSERT INTO applied (event_id, subject) VALUES (NULL, 'x')")
            )
        await record_applied(delivery)

    await publish(infra.kafka_bootstrap, topics(RESPONSES), [buggy, violating, good])
    group = f"g-{uuid.uuid4().hex[:8]}"
    async with consuming(
        infra.kafka_bootstrap,
        infra.database_url,
        schema,
        topics(RESPONSES),
        {ResponseReceived.event_type: handler},
        group,
    ) as sessions:

        async def good_applied() -> bool:
            return good.id in await _applied_in_order(sessions)

        assert await wait_for(good_applied, timeout_s=60)
        assert await _applied_in_order(sessions) == [good.id]

    assert attempts.count(buggy.id) == 4
    assert attempts.count(violating.id) == 4
    assert _transient_retries(group) == 0
    dead = await read_records(
        infra.kafka_bootstrap,
        [dead_letter_topic(topics(RESPONSES))],
        until=lambda rs: len(rs) >= 2,
    )
    assert [decode(r.value, r.headers, r.key).id for r in dead] == [buggy.id, violating.id]
    errors = [dict(r.headers)["muster.dlq.error"] for r in dead]
    assert errors[0].startswith(b"KeyError") and b"IntegrityError" in errors[1]
    assert {dict(r.headers)["muster.dlq.reason"] for r in dead} == {b"handler_failed"}
    await engine.dispose()
