"""One emergency's batch of alert and response events applied in one transaction leaves
the same board as the same events applied one by one, under duplication and reordering,
against real PostgreSQL schemas migrated by dispatch; a poison record in a batch is
still dead-lettered alone.

The records go through `EventConsumer.handle_records`, the very entry point the Kafka
subscriber calls with each poll (Kafka itself is exercised by the flow tests)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.dispatch import emergencies as dispatch_emergencies
from services.dispatch.app import BOARD_EVENTS
from services.dispatch.models import emergencies
from services.dispatch.settings import Settings
from shared.consumer import EventConsumer
from shared.db import make_engine, make_sessionmaker
from shared.events.alerts import AlertSent
from shared.events.envelope import Envelope, encode
from shared.events.topics import ALERTS, RESPONSES
from shared.kafka import new_producer
from tests.dispatch.conftest import Script
from tests.support.kafka import read_records
from tests.support.processes import run_migrations

MEMBERS = [uuid.UUID(f"00000000-0000-4000-8000-0000000002{i:02d}") for i in range(6)]


@dataclasses.dataclass
class PolledRecord:
    """What the subscriber hands over from a poll: an aiokafka ConsumerRecord's fields."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def records(envelopes: Sequence[Envelope], prefix: str, first_offset: int) -> list[PolledRecord]:
    out = []
    for offset, envelope in enumerate(envelopes, first_offset):
        encoded = encode(envelope)
        on_responses = ".response." in envelope.type or ".roll_call." in envelope.type
        topic = RESPONSES if on_responses else ALERTS
        out.append(
            PolledRecord(
                prefix + topic, 0, offset, encoded.key, encoded.value, list(encoded.headers)
            )
        )
    return out


@dataclasses.dataclass
class Board:
    schema: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    settings: Settings


@pytest.fixture
async def boards(
    service_env: dict[str, str], admin_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Board, Board]]:
    """Two dispatch schemas: one applied one by one, one in batches."""
    made: list[Board] = []
    for schema in (service_env["MUSTER_DB_SCHEMA"], f"t_{uuid.uuid4().hex[:12]}"):
        run_migrations("dispatch", {**service_env, "MUSTER_DB_SCHEMA": schema})
        monkeypatch.setenv("MUSTER_DB_SCHEMA", schema)
        monkeypatch.setenv("MUSTER_TOPIC_PREFIX", service_env["MUSTER_TOPIC_PREFIX"])
        engine = make_engine(service_env["DATABASE_URL"], schema, pool_size=2)
        made.append(Board(schema, engine, make_sessionmaker(engine), Settings()))
    yield made[0], made[1]
    for item in made:
        await item.engine.dispose()
    async with admin_engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{made[1].schema}" CASCADE'))


def consumer(board: Board, *, batch: bool, producer: Any = None, **options: Any) -> EventConsumer:
    handler = partial(dispatch_emergencies.on_board_event, board.settings)
    return EventConsumer(
        name="dispatch-board-test",
        handlers={event.event_type: handler for event in BOARD_EVENTS},
        producer=producer,
        sessionmaker=board.sessions,
        batch_transactions=batch,
        **options,
    )


async def declare(board: Board, emergency_id: uuid.UUID, members_needed: int) -> None:
    async with board.sessions() as session, session.begin():
        await session.execute(
            emergencies.insert().values(
                id=emergency_id, section="AL", title="drill", category="Rescue",
                severity="Severe", urgency="Immediate", area={}, members_needed=members_needed,
                status="active", reply_code=f"Q{uuid.uuid4().hex[:6]}", created_by="test",
            )
        )  # fmt: skip


async def board_of(board: Board, emergency_id: uuid.UUID) -> dict[str, Any]:
    """Everything a console reads (the rows' columns and facts, `staffed`), minus the
    wall-clock `updated_at` of each write."""
    async with board.sessions() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT member_id, alert_id, status, eta_minutes, expected_arrival_at, "
                    "distance_m, wave, qualifications, answered_at, accepted_at, facts "
                    "FROM board_rows WHERE emergency_id = :id"
                ),
                {"id": emergency_id},
            )
        ).all()
        staffed = await session.scalar(
            text("SELECT staffed FROM emergencies WHERE id = :id"), {"id": emergency_id}
        )
    return {"staffed": staffed, "rows": {row.member_id: row._asdict() for row in rows}}


step = st.tuples(
    st.sampled_from(["sent", "delivered", "failed", "stood_down", "accepted", "declined",
                     "arrived", "en_route", "on_scene", "released", "home_safe",
                     "call_placed", "call_ended", "roll_call_confirmed"]),
    st.sampled_from(range(len(MEMBERS))),
    st.integers(0, 600),
    st.one_of(st.none(), st.integers(0, 90)),
)  # fmt: skip


def script_envelopes(
    emergency_id: uuid.UUID, steps: list[tuple[str, int, int, int | None]]
) -> list[Envelope]:
    script = Script(emergency_id, datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    out: list[Envelope] = []
    for kind, member_index, at, eta in steps:
        member = MEMBERS[member_index]
        if kind in (
            "accepted",
            "declined",
            "arrived",
            "en_route",
            "on_scene",
            "released",
            "home_safe",
        ):
            out.append(script.answer(member, kind, at, eta if kind == "accepted" else None))
        elif kind == "sent":
            out.append(script.sent(member, at, distance_m=at * 10))
        else:
            out.append(getattr(script, kind)(member, at))
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(step, min_size=1, max_size=30),
    needed=st.integers(1, 5),
    data=st.data(),
)
async def test_a_batch_in_one_transaction_leaves_the_board_one_by_one_leaves(
    boards: tuple[Board, Board],
    topics: Any,
    steps: list[tuple[str, int, int, int | None]],
    needed: int,
    data: st.DataObject,
) -> None:
    one_by_one, batched = boards
    emergency_id = uuid.uuid4()
    await declare(one_by_one, emergency_id, needed)
    await declare(batched, emergency_id, needed)
    envelopes = script_envelopes(emergency_id, steps)

    reference = consumer(one_by_one, batch=False)
    for record in records(envelopes, topics.prefix, 0):
        await reference.handle_records([record])

    # the same events, some twice, in any order, cut into polls of any size
    duplicates = data.draw(st.lists(st.sampled_from(envelopes), max_size=10))
    shuffled = data.draw(st.permutations(envelopes + duplicates))
    polled = records(shuffled, topics.prefix, 0)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(polled) - 1)), max_size=4)))
    batches = [polled[a:b] for a, b in zip([0, *cuts], [*cuts, len(polled)], strict=True)]
    batching = consumer(batched, batch=True)
    outcomes = []
    for poll in batches:
        outcomes += await batching.handle_records(poll)

    assert outcomes.count("applied") == len({e.id for e in envelopes})
    assert await board_of(batched, emergency_id) == await board_of(one_by_one, emergency_id)


async def test_a_poison_record_in_a_batch_is_dead_lettered_alone(
    boards: tuple[Board, Board], topics: Any, infra: Any
) -> None:
    _, batched = boards
    emergency_id = uuid.uuid4()
    await declare(batched, emergency_id, 2)
    script = Script(emergency_id)
    good = [script.sent(MEMBERS[0], 1), script.sent(MEMBERS[1], 2)]
    # valid for the event's model, but the board's integer column cannot hold it: the
    # handler fails on this record only, whatever is retried
    poison = script.envelope(
        AlertSent(
            emergency_id=emergency_id, member_id=MEMBERS[2], alert_id=uuid.uuid4(), wave=1,
            channel="sms", distance_m=2**40, language="sq", qualifications=["FIRST_AID"],
            sent_at=datetime.now(UTC),
        )
    )  # fmt: skip
    answers = [script.answer(MEMBERS[0], "accepted", 5, 10)]
    producer = new_producer(infra.kafka_bootstrap, "test-board-batches")
    await producer.start()
    try:
        batching = consumer(
            batched, batch=True, producer=producer, max_attempts=2, retry_base_s=0.0
        )
        outcomes = await batching.handle_records(
            records([*good, poison, *answers], topics.prefix, 0)
        )
    finally:
        await producer.stop()
    assert outcomes == ["applied", "applied", "dead_lettered", "applied"]
    rows = (await board_of(batched, emergency_id))["rows"]
    assert set(rows) == {MEMBERS[0], MEMBERS[1]}
    assert rows[MEMBERS[0]]["status"] == "accepted"
    # read for a while past the first: a second dead letter would be a good record
    dead = await read_records(
        infra.kafka_bootstrap, [topics(ALERTS) + ".dlq"], until=lambda r: len(r) > 1,
        timeout_s=5.0,
    )  # fmt: skip
    assert [record.value for record in dead] == [encode(poison).value]
