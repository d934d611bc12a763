"""A wave is recorded in chunks, each committed on its own: an interrupted recording is
resumed by the redelivered event, and every selected member ends with one alert."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as redis
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.alerting import Alerting, record_chunks
from services.alerts.index import TargetingIndex
from services.alerts.settings import Settings
from shared.consumer import Delivery
from shared.db import make_engine, make_sessionmaker
from shared.events.catalog import make_envelope
from shared.events.emergencies import EmergencyDeclared
from shared.events.envelope import Envelope
from tests.alerts.fake_twilio import FakeTwilio
from tests.alerts.members import (
    CENTRE,
    EMERGENCIES,
    MEMBERS_STATE,
    declared,
    member,
    publish_members,
    wait_indexed,
)
from tests.conftest import Topics
from tests.support.kafka import publish
from tests.support.processes import start_service


@given(total=st.integers(0, 20_000), first=st.integers(1, 500), rest=st.integers(1, 3000))
def test_chunks_cover_the_wave_in_order(total: int, first: int, rest: int) -> None:
    chunks = list(record_chunks(total, first, rest))
    if not chunks:
        assert total == 0
        return
    assert [s for s, _ in chunks] == [0, *(e for _, e in chunks[:-1])]
    assert chunks[-1][1] == total
    assert all(e - s == (first if i == 0 else rest) for i, (s, e) in enumerate(chunks[:-1]))
    assert all(0 < e - s <= (first if i == 0 else rest) for i, (s, e) in enumerate(chunks))


async def interrupted_recording(
    env: dict[str, str], client: redis.Redis, envelope: Envelope, event: EmergencyDeclared
) -> None:
    """The service's own handler, in a transaction that never commits: what a process
    killed after the wave's first chunk leaves behind (the first chunk, committed on its
    own; no later chunk, no wave mark, no processed_events row)."""
    settings = Settings.model_validate(env)
    engine = make_engine(settings.database_url, settings.schema_name)
    sessions = make_sessionmaker(engine)
    alerting = Alerting(settings, TargetingIndex(client, settings), sessions)
    try:
        async with sessions() as session:
            await session.begin()
            await alerting.on_declared(
                Delivery(envelope, event, settings.topic(EMERGENCIES), 0, 0, session)
            )
            await session.rollback()
    finally:
        await engine.dispose()


async def test_redelivery_after_a_partial_recording_alerts_each_selected_member_once(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client: redis.Redis,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    # 400 members in a line, ~2 m apart: "the nearest 300" is unambiguous
    members = [member(lat=CENTRE[0] + i * 0.00002, lon=CENTRE[1]) for i in range(400)]
    nearest = {m.member_id for m in members[:300]}
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), members)
    env = {**alerts_env, "ALERTS_RECORD_FIRST_CHUNK": "40", "ALERTS_RECORD_CHUNK": "1000"}
    service = start_service("alerts", env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, members)
        emergency = declared(radius_m=5000, members_needed=100)  # a wave of 300
        envelope = make_envelope(emergency, source="muster.dispatch")
        await interrupted_recording(env, redis_client, envelope, emergency)
        async with admin_engine.connect() as conn:
            partial = {
                r.member_id: r.token
                for r in await conn.execute(text(f'SELECT member_id, token FROM "{schema}".alerts'))
            }
        assert set(partial) == {m.member_id for m in members[:40]}, "not the first chunk"

        again = make_envelope(emergency, source="muster.dispatch")  # same facts, new event id
        await publish(topics.bootstrap, topics(EMERGENCIES), [envelope, envelope, again])
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 300, 60)
        await asyncio.sleep(1.5)  # anything extra would arrive now

        phones = sorted(sms.to for sms in twilio.messages)
        assert phones == sorted(m.phone or "" for m in members[:300])  # once each
        async with admin_engine.connect() as conn:
            rows = (
                await conn.execute(text(f'SELECT member_id, token, wave FROM "{schema}".alerts'))
            ).all()
            messages = (
                await conn.execute(
                    text(
                        f"SELECT count(*), count(DISTINCT alert_id) "
                        f"FROM \"{schema}\".outbound_messages WHERE kind = 'alert'"
                    )
                )
            ).one()
            waves = (
                await conn.execute(
                    text(f'SELECT emergency_id, wave, recorded FROM "{schema}".alert_waves')
                )
            ).all()
        assert len(rows) == 300
        assert {r.member_id for r in rows} == nearest
        assert all(r.wave == 1 for r in rows)
        # the first chunk's rows were kept, not written again
        assert {r.member_id: r.token for r in rows if r.member_id in partial} == partial
        assert tuple(messages) == (300, 300)
        assert [tuple(w) for w in waves] == [(emergency.emergency_id, 1, 300)]
    finally:
        service.stop()


async def _count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def test_first_page_sent_before_the_rest_is_written_then_sigkill_alerts_each_member_once(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client: redis.Redis,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    """The real process, its own sender woken by the first page's commit: the nearest 40
    are texted while the rest of the wave is not even written (the pause between chunks
    holds it there), the process is SIGKILLed, and its successor, redelivered the event,
    writes and sends the rest: every one of the 300 nearest gets exactly one SMS."""
    members = [member(lat=CENTRE[0] + i * 0.00002, lon=CENTRE[1]) for i in range(400)]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), members)
    env = {**alerts_env, "ALERTS_RECORD_FIRST_CHUNK": "40", "ALERTS_RECORD_CHUNK": "100"}
    paused = {**env, "ALERTS_FAULT_PAUSE_BETWEEN_CHUNKS_S": "600"}
    service = start_service("alerts", paused, tmp_path)
    restarted = None
    try:
        await wait_indexed(redis_client, topics.prefix, members)
        emergency = declared(radius_m=5000, members_needed=100)  # a wave of 300
        await publish(
            topics.bootstrap,
            topics(EMERGENCIES),
            [make_envelope(emergency, source="muster.dispatch")],
        )
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 40, 60), "first page not sent"
        # the first page's results recorded (so the kill leaves nothing 'sending' to resend)
        sent = f"SELECT count(*) FROM \"{schema}\".outbound_messages WHERE status = 'sent'"
        for _ in range(200):
            if await _count(admin_engine, sent) == 40:
                break
            await asyncio.sleep(0.05)
        assert await _count(admin_engine, sent) == 40
        # ... while the rest of the wave was not written: the first page went out first
        assert await _count(admin_engine, f'SELECT count(*) FROM "{schema}".alerts') == 40
        assert await _count(admin_engine, f'SELECT count(*) FROM "{schema}".alert_waves') == 0
        assert sorted(s.to for s in twilio.messages) == sorted(m.phone or "" for m in members[:40])

        service.kill()
        restarted = start_service("alerts", env, tmp_path)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 300, 90)
        await asyncio.sleep(1.5)  # anything extra would arrive now

        phones = sorted(sms.to for sms in twilio.messages)
        assert phones == sorted(m.phone or "" for m in members[:300])  # once each
        async with admin_engine.connect() as conn:
            waves = (
                await conn.execute(text(f'SELECT wave, recorded FROM "{schema}".alert_waves'))
            ).all()
            ranks = (
                await conn.execute(
                    text(
                        f"SELECT count(*), count(DISTINCT alert_id), count(DISTINCT rank) "
                        f"FROM \"{schema}\".outbound_messages WHERE kind = 'alert'"
                    )
                )
            ).one()
        assert [tuple(w) for w in waves] == [(1, 300)]
        assert tuple(ranks) == (300, 300, 300)
    finally:
        service.kill()
        if restarted is not None:
            restarted.stop()
