"""SIGKILL of dispatch while the answers to a 2,000-member emergency arrive."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.dispatch import board
from services.dispatch.board_store import row_json
from services.dispatch.summaries import summarize
from shared.events.catalog import make_envelope, parse_data
from shared.events.envelope import Envelope
from shared.events.responses import ResponseReceived
from shared.events.topics import ALERTS, RESPONSES
from tests.faults.conftest import MEMBERS_NEEDED, SELECTED, FaultPlatform, publish_fast

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def answer_plan(
    alerts: dict[uuid.UUID, uuid.UUID], emergency_id: uuid.UUID, rng: random.Random
) -> list[Envelope]:
    """The answers of 900 of the members, as alerts would publish them: accepts with
    ETAs, declines, minds changed (the later decline published *before* the accept it
    overrides), arrivals, and 100 events delivered twice; shuffled."""
    start = datetime.now(UTC) - timedelta(minutes=20)
    answering = rng.sample(sorted(alerts), 900)

    def response(member: uuid.UUID, answer: str, minute: float, eta: int | None = None) -> Any:
        return ResponseReceived(
            emergency_id=emergency_id, member_id=member, alert_id=alerts[member],
            answer=answer, eta_minutes=eta, channel="sms",
            responded_at=start + timedelta(minutes=minute),
        )  # fmt: skip

    events = []
    for i, member in enumerate(answering):
        minute = rng.uniform(0, 10)
        if i < 550:
            events.append(response(member, "accepted", minute, rng.randint(3, 45)))
        elif i < 750:
            events.append(response(member, "declined", minute))
        elif i < 850:  # changed their mind: the decline travels first
            events.append(response(member, "declined", minute + 5))
            events.append(response(member, "accepted", minute, rng.randint(3, 45)))
        else:
            events.append(response(member, "accepted", minute, rng.randint(3, 45)))
            events.append(response(member, "arrived", minute + 8))
    envelopes = [make_envelope(e, source="muster.alerts") for e in events]
    rng.shuffle(envelopes)
    # a redelivery: the same events (same ids) again, later
    return envelopes + rng.sample(envelopes, 100)


async def test_sigkill_dispatch_while_answers_arrive(fault_platform: FaultPlatform) -> None:
    """Dispatch dies (SIGKILL) while 900 members' answers stream in, misses a third of
    them while down, and is started again while the last third arrives.

    Guaranteed: the board and the authority summary end exactly as the pure board
    (`services.dispatch.board.replay`) and summary functions compute them from every
    alert and answer event on Kafka, i.e. as a run without the crash: no answer lost,
    none applied twice, a later answer never overridden by an earlier one that arrived
    after it.
    What the user sees: the board and the summary stop updating while dispatch is down
    (its API answers nothing), then catch up within seconds of the restart.
    """
    p = fault_platform
    centre = p.new_area()
    seeded = await p.seed_members(SELECTED, centre)
    p.step("2,000 members indexed")
    declared = await p.declare(centre, title="Flooding: dispatch crash")
    emergency_id = uuid.UUID(declared["id"])

    schema = p.envs["alerts"]["MUSTER_DB_SCHEMA"]
    engine = create_async_engine(p.servers.postgres.url, pool_size=1)
    try:

        async def alert_ids() -> dict[uuid.UUID, uuid.UUID]:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(f'SELECT member_id, id FROM "{schema}".alerts WHERE emergency_id = :e'),
                    {"e": emergency_id},
                )
                return {m: a for m, a in rows.all()}

        alerts = await p.eventually(
            alert_ids, lambda found: len(found) == SELECTED, "2,000 alerts recorded", timeout_s=90
        )
    finally:
        await engine.dispose()
    assert set(alerts) == {m.member_id for m in seeded}
    answers = answer_plan(alerts, emergency_id, random.Random(2))
    third = len(answers) // 3
    responses_topic = p.topic(RESPONSES)

    await publish_fast(p.servers.kafka.bootstrap, responses_topic, answers[:third])

    async def answered() -> int:
        rows = await p.board(declared["id"])
        return sum(r["status"] in ("accepted", "declined", "on_scene", "standby") for r in rows)

    await p.eventually(answered, lambda n: n >= 50, "answers on the board", timeout_s=120)
    p.dispatch.kill()
    p.step("dispatch killed while the answers arrive")
    await publish_fast(p.servers.kafka.bootstrap, responses_topic, answers[third : 2 * third])
    await p.start("dispatch")
    p.step("dispatch started again")
    await publish_fast(p.servers.kafka.bootstrap, responses_topic, answers[2 * third :])

    # the crash-free computation: every alert and answer event of the emergency, once
    # every alert has been announced (nobody answered by SMS, so no follow-up is sent)
    async def board_events() -> list[board.BoardEvent]:
        found = []
        for envelope in await p.events(ALERTS, RESPONSES, emergency_id=str(emergency_id)):
            event = board.from_event(parse_data(envelope), envelope.id)
            if event is not None:
                found.append(event)
        return found

    events = await p.eventually(
        board_events,
        lambda found: sum(e.kind == "sent" for e in found) >= SELECTED,
        "every alert announced",
        timeout_s=90,
        every_s=2.0,
    )
    assert {e.event_id for e in events if e.kind == "response"} == {a.id for a in answers}
    expected_rows = board.replay(events, MEMBERS_NEEDED)
    expected = {str(m): comparable(row_json(r)) for m, r in expected_rows.items()}

    async def differences() -> list[tuple[str, Any, Any]]:
        shown = {r["member_id"]: comparable(r) for r in await p.board(declared["id"])}
        return [
            (m, expected.get(m), shown.get(m))
            for m in sorted(set(expected) | set(shown))
            if expected.get(m) != shown.get(m)
        ]

    diff = await p.eventually(
        differences, lambda d: not d, "board as without the crash", timeout_s=300, every_s=3.0
    )
    assert diff == []
    p.step("board identical to the crash-free computation")

    summary = await p.summary(declared["id"])
    reference = summarize(
        expected_rows.values(),
        emergency_id=emergency_id,
        section=declared["section"],
        drill=declared["drill"],
        needed=MEMBERS_NEEDED,
        declared_at=datetime.fromisoformat(declared["declared_at"]),
        updated_at=datetime.now(UTC),
    ).model_dump(mode="json", exclude={"updated_at"})
    assert {k: v for k, v in summary.items() if k != "updated_at"} == reference
    counts = summary["counts"]
    assert counts["alerted"] == SELECTED
    assert counts["declined"] == 300 and counts["arrived"] == 50
    assert counts["accepted"] == 550 and counts["standby"] == 0


def row_json_keys() -> tuple[str, ...]:
    """The fields of a board row as the API shows it (board_store.row_json)."""
    sample = board.BoardRow(
        member_id=uuid.uuid4(), status="notified", eta_minutes=None, expected_arrival_at=None,
        distance_m=None, wave=None, qualifications=(), answered_at=None, accepted_at=None,
        first_accepted_at=None, updated_at=None,
    )  # fmt: skip
    return tuple(row_json(sample))


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A board row's fields, times as datetimes (the API writes UTC as `Z`, isoformat as
    `+00:00`)."""
    return {
        key: datetime.fromisoformat(row[key]) if key.endswith("_at") and row.get(key) else
        row.get(key)
        for key in row_json_keys()
    }  # fmt: skip
