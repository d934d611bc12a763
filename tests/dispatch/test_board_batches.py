"""One emergency's batch of alert and response events applied in one transaction, as one
planning step (`on_board_events`), leaves the same board as the same events applied one
by one, under duplication and reordering, against real PostgreSQL schemas migrated by
dispatch; with the same side effects as one by one in the same order (the
`emergency.updated` events and audit entries of staffed and call-ups, the overdue
timers, the rows announced to live consoles); a poison record in a batch is still
dead-lettered alone.

The records go through `EventConsumer.handle_records`, the very entry point the Kafka
subscriber calls with each poll (Kafka itself is exercised by the flow tests)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.dispatch import board_store
from services.dispatch import emergencies as dispatch_emergencies
from services.dispatch.app import BOARD_EVENTS
from services.dispatch.live import asyncpg_dsn
from services.dispatch.models import emergencies
from services.dispatch.settings import Settings
from shared.consumer import EventConsumer
from shared.db import make_engine, make_sessionmaker
from shared.events.alerts import AlertSent, AlertStoodDown
from shared.events.envelope import Envelope, decode, encode
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


async def make_boards(
    count: int, service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> list[Board]:
    """Dispatch schemas side by side (the first is the test's own)."""
    made: list[Board] = []
    for index in range(count):
        schema = service_env["MUSTER_DB_SCHEMA"] if index == 0 else f"t_{uuid.uuid4().hex[:12]}"
        run_migrations("dispatch", {**service_env, "MUSTER_DB_SCHEMA": schema})
        monkeypatch.setenv("MUSTER_DB_SCHEMA", schema)
        monkeypatch.setenv("MUSTER_TOPIC_PREFIX", service_env["MUSTER_TOPIC_PREFIX"])
        engine = make_engine(service_env["DATABASE_URL"], schema, pool_size=2)
        made.append(Board(schema, engine, make_sessionmaker(engine), Settings()))
    return made


async def drop_boards(made: list[Board], admin_engine: AsyncEngine) -> None:
    for item in made:
        await item.engine.dispose()
    async with admin_engine.begin() as conn:
        for item in made[1:]:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{item.schema}" CASCADE'))


@pytest.fixture
async def boards(
    service_env: dict[str, str], admin_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Board, Board, Board]]:
    """Three dispatch schemas: events applied one by one in their order, one by one in
    another order, and in batches in that other order."""
    made = await make_boards(3, service_env, monkeypatch)
    yield made[0], made[1], made[2]
    await drop_boards(made, admin_engine)


class Announced:
    """The row payloads a schema's board channel carried (what live consoles get)."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.payloads.append(json.loads(payload))


def consumer(board: Board, *, batch: bool, producer: Any = None, **options: Any) -> EventConsumer:
    handler = partial(dispatch_emergencies.on_board_event, board.settings)
    group_handler = partial(dispatch_emergencies.on_board_events, board.settings)
    return EventConsumer(
        name="dispatch-board-test",
        handlers={event.event_type: handler for event in BOARD_EVENTS},
        producer=producer,
        sessionmaker=board.sessions,
        batch_transactions=batch,
        # as services.dispatch.app wires the board consumer
        group_handlers={event.event_type: group_handler for event in BOARD_EVENTS}
        if batch
        else None,
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


async def side_effects_of(board: Board, emergency_id: uuid.UUID) -> dict[str, Any]:
    """What applying the events did besides the rows, in order, minus wall-clock times:
    the `emergency.updated` events (staffed, call-ups, with their causing event), the
    audit entries, the overdue timers."""
    async with board.sessions() as session:
        outbox = (
            await session.execute(text("SELECT key, value, headers FROM outbox ORDER BY id"))
        ).all()
        audit = (
            await session.execute(
                text("SELECT action, diff FROM audit_log WHERE emergency_id = :id ORDER BY id"),
                {"id": emergency_id},
            )
        ).all()
        timers = (
            await session.execute(
                text(
                    "SELECT member_id, kind, due_at, status FROM safety_timers "
                    "WHERE emergency_id = :id ORDER BY member_id, kind"
                ),
                {"id": emergency_id},
            )
        ).all()
    updates = []
    for key, value, headers in outbox:
        envelope = decode(value, [(k, v.encode("latin-1")) for k, v in headers], key)
        data = dict(envelope.data)
        if data.get("emergency_id") != str(emergency_id):
            continue
        # the wall clock, and the reply code `declare` drew for each schema
        data.pop("updated_at", None)
        data.pop("reply_code", None)
        updates.append((envelope.type, data, envelope.causationid))
    return {
        "outbox": updates,
        "audit": [(action, diff) for action, diff in audit],
        "timers": [tuple(timer) for timer in timers],
    }


async def announced_until(
    announced: Announced, reference: Announced, emergency_id: uuid.UUID
) -> tuple[set[str], set[str]]:
    """The distinct row payloads each side announced for the emergency, once they agree
    (notifications arrive after their commits) or after a few seconds."""

    def distinct(of: Announced) -> set[str]:
        return {
            json.dumps(p["row"], sort_keys=True)
            for p in of.payloads
            if p["emergency_id"] == str(emergency_id) and "row" in p
        }

    for _ in range(100):
        if distinct(announced) == distinct(reference):
            break
        await asyncio.sleep(0.05)
    return distinct(announced), distinct(reference)


step = st.tuples(
    st.sampled_from(["sent", "delivered", "failed", "stood_down", "closed", "accepted",
                     "declined", "arrived", "en_route", "on_scene", "released", "home_safe",
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
        elif kind == "closed":
            # the final stand-down: it takes an acceptor's place away
            out.append(
                script.envelope(
                    AlertStoodDown(
                        emergency_id=emergency_id, member_id=member,
                        alert_id=script._alert(member), reason="closed",
                        stood_down_at=script.t0 + timedelta(seconds=at),
                    )
                )
            )  # fmt: skip
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
    boards: tuple[Board, Board, Board],
    topics: Any,
    steps: list[tuple[str, int, int, int | None]],
    needed: int,
    data: st.DataObject,
) -> None:
    in_order, one_by_one, batched = boards
    emergency_id = uuid.uuid4()
    for board in boards:
        await declare(board, emergency_id, needed)
    envelopes = script_envelopes(emergency_id, steps)

    reference = consumer(in_order, batch=False)
    for record in records(envelopes, topics.prefix, 0):
        await reference.handle_records([record])

    # the same events, some twice, in any order, cut into polls of any size
    duplicates = data.draw(st.lists(st.sampled_from(envelopes), max_size=10))
    shuffled = data.draw(st.permutations(envelopes + duplicates))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(shuffled) - 1)), max_size=4)))
    outcomes = await apply_both_ways(one_by_one, batched, topics, emergency_id, shuffled, cuts)

    assert outcomes.count("applied") == len({e.id for e in envelopes})
    assert await board_of(batched, emergency_id) == await board_of(in_order, emergency_id)


async def apply_both_ways(
    one_by_one: Board,
    batched: Board,
    topics: Any,
    emergency_id: uuid.UUID,
    envelopes: Sequence[Envelope],
    cuts: list[int],
) -> list[str]:
    """Apply `envelopes` one by one to one board and, cut into polls at `cuts`, in batches
    to the other; check that both boards and their side effects are the same (the
    staffed and call-up events, audit entries, overdue timers, and every row state a live
    console was sent); return the batches' outcomes."""
    polled = records(envelopes, topics.prefix, 0)
    batches = [polled[a:b] for a, b in zip([0, *cuts], [*cuts, len(polled)], strict=True)]
    listeners = []
    heard = {one_by_one.schema: Announced(), batched.schema: Announced()}
    for board in (one_by_one, batched):
        listener = await asyncpg.connect(asyncpg_dsn(board.settings.database_url))
        await listener.add_listener(
            board_store.channel(board.settings), heard[board.schema].on_notify
        )
        listeners.append(listener)
    try:
        alone = consumer(one_by_one, batch=False)
        for record in polled:
            await alone.handle_records([record])
        batching = consumer(batched, batch=True)
        outcomes = []
        for poll in batches:
            outcomes += await batching.handle_records(poll)
        got, wanted = await announced_until(
            heard[batched.schema], heard[one_by_one.schema], emergency_id
        )
    finally:
        for listener in listeners:
            await listener.close()
    assert await board_of(batched, emergency_id) == await board_of(one_by_one, emergency_id)
    assert await side_effects_of(batched, emergency_id) == await side_effects_of(
        one_by_one, emergency_id
    )
    assert got == wanted
    return outcomes


async def test_a_batch_acts_on_each_events_quota_change_in_order(
    boards: tuple[Board, Board, Board], topics: Any
) -> None:
    """Within one poll: staffed reached, lost by a drop-out a standby fills (a call-up),
    lost again with nobody left, reached again; a release arms the overdue timer, and a
    home-safe later in the same poll leaves it armed, as one by one."""
    _, one_by_one, batched = boards
    emergency_id = uuid.uuid4()
    for board in (one_by_one, batched):
        await declare(board, emergency_id, 1)
    a, b, c = MEMBERS[:3]
    script = Script(emergency_id, datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    envelopes = [
        script.sent(a, 0), script.sent(b, 0), script.sent(c, 0),
        script.answer(a, "accepted", 10, 5),  # staffed
        script.answer(b, "accepted", 20, 5),  # standby
        script.answer(a, "declined", 30),  # b called up
        script.answer(b, "declined", 40),  # no longer staffed
        script.answer(c, "accepted", 50, 5),  # staffed again
        script.answer(c, "en_route", 60), script.answer(c, "released", 70),
        script.answer(c, "home_safe", 80),
    ]  # fmt: skip
    outcomes = await apply_both_ways(one_by_one, batched, topics, emergency_id, envelopes, [])
    assert outcomes == ["applied"] * len(envelopes)
    effects = await side_effects_of(batched, emergency_id)
    # not vacuous: the batch did what one by one does
    assert [data["call_up"] for _, data, _ in effects["outbox"]] == [[], [str(b)], [], []]
    assert [data["staffed"] for _, data, _ in effects["outbox"]] == [True, True, False, True]
    assert [member for member, *_ in effects["timers"]] == [c]
    assert (await board_of(batched, emergency_id))["rows"][c]["status"] == "home_safe"


async def test_a_poison_record_in_a_batch_is_dead_lettered_alone(
    boards: tuple[Board, Board, Board], topics: Any, infra: Any
) -> None:
    _, _, batched = boards
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
