"""Duplicates are counted and bounded (issue 10, defect 9), against alerts as processes
and a local Twilio-compatible server:

- a 5xx the provider answered after perhaps taking the message, then a successful retry:
  a possible duplicate, counted in `muster_alerts_possible_duplicates_total` and flagged;
- a false-alarm correction waits for the alert it corrects (here in provider retries);
- a sender whose heartbeat stalled (SIGSTOP) while another reclaimed and resent its row
  cannot overwrite that row, nor publish a second `alert.sent`, when it wakes up.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.emergencies import EmergencyClosed
from shared.events.topics import ALERTS
from tests.alerts.fake_twilio import FakeTwilio
from tests.alerts.members import (
    CENTRE,
    EMERGENCIES,
    MEMBERS_STATE,
    declared,
    member,
    publish_emergency_event,
    publish_members,
    wait_indexed,
)
from tests.conftest import Topics
from tests.support.kafka import read_events
from tests.support.processes import start_service


async def metric(url: str, name: str) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        metrics = (await client.get("/metrics")).text
    found = re.search(rf"^{name} ([0-9.e+]+)$", metrics, re.M)
    return float(found.group(1)) if found else 0.0


async def test_provider_errors_count_duplicates_and_a_correction_waits_for_its_alert(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    slow = member(lat=CENTRE[0], language="en")
    twilio.script(slow.phone or "", [500])  # the provider may have taken it: retried
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [slow])
    # the retry comes 4 s later or more: the correction is written meanwhile
    env = {**alerts_env, "ALERTS_SMS_RETRY_BASE_S": "4.0"}
    service = start_service("alerts", env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, [slow])
        emergency = declared(radius_m=2000, members_needed=1, title="Flood")
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), emergency)
        assert await twilio.wait_for_async(lambda _: len(twilio.attempts(slow.phone or "")) >= 1)
        assert twilio.to(slow.phone or "") == []
        closed = EmergencyClosed(
            emergency_id=emergency.emergency_id,
            reason="false_alarm",
            false_alarm=True,
            closed_at=datetime.now(UTC),
        )
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), closed)
        assert await twilio.wait_for_async(lambda _: len(twilio.to(slow.phone or "")) >= 2, 60)
        await asyncio.sleep(1.0)
        # the alert first, then its correction, though the correction was written first
        bodies = [m.body for m in twilio.to(slow.phone or "")]
        assert len(bodies) == 2 and "Flood" in bodies[0] and "/r/" in bodies[0], bodies
        assert "/r/" not in bodies[1], bodies
        assert twilio.attempts(slow.phone or "") == [500, 201, 201]  # alert, alert, correction

        # the 5xx was followed by another attempt: one possible extra copy
        assert await metric(service.url, "muster_alerts_possible_duplicates_total") == 1.0
        async with admin_engine.connect() as conn:
            flagged = (
                await conn.execute(
                    text(
                        f'SELECT kind FROM "{schema}".outbound_messages '
                        "WHERE possible_duplicate ORDER BY kind"
                    )
                )
            ).scalars()
            assert list(flagged) == ["alert"]
    finally:
        service.stop()


async def test_a_stalled_sender_cannot_overwrite_a_reclaimed_row(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    victim = member(lat=CENTRE[0], language="en")
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [victim])
    # the first sender holds the accepted message 8 s before recording it
    stalled = start_service(
        "alerts", {**alerts_env, "ALERTS_FAULT_PAUSE_AFTER_SEND_S": "8"}, tmp_path
    )
    other = None
    paused = False
    try:
        await wait_indexed(redis_client, topics.prefix, [victim])
        emergency = declared(radius_m=2000, members_needed=1)
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), emergency)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 1, 30)
        os.kill(stalled.process.pid, signal.SIGSTOP)  # its heartbeat stops with it
        paused = True
        first_sid = twilio.messages[0].sid

        other = start_service("alerts", alerts_env, tmp_path)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 2, 60)
        second_sid = twilio.messages[1].sid
        query = text(
            f'SELECT status, provider_sid, possible_duplicate FROM "{schema}".outbound_messages'
        )
        for _ in range(100):
            async with admin_engine.connect() as conn:
                row = (await conn.execute(query)).one()
            if row.status == "sent":
                break
            await asyncio.sleep(0.1)
        assert (row.status, row.provider_sid, row.possible_duplicate) == (
            "sent",
            second_sid,
            True,
        )

        os.kill(stalled.process.pid, signal.SIGCONT)
        paused = False
        for _ in range(100):  # until the woken sender has tried to record its result
            async with admin_engine.connect() as conn:
                after = (await conn.execute(query)).one()
            if after.provider_sid != second_sid or await metric(
                stalled.url, "muster_alerts_fenced_results_total"
            ):
                break
            await asyncio.sleep(0.1)
        # the reclaiming sender's result stands
        assert (after.status, after.provider_sid) == ("sent", second_sid) != ("sent", first_sid)
        assert await metric(stalled.url, "muster_alerts_fenced_results_total") == 1.0
        events = await read_events(topics.bootstrap, [topics(ALERTS)], count=1, settle_s=2.0)
        assert [e.type for e in events] == ["muster.alert.sent.v1"]
        assert await metric(other.url, "muster_alerts_possible_duplicates_total") == 1.0
    finally:
        if paused:
            os.kill(stalled.process.pid, signal.SIGCONT)
        stalled.stop()
        if other is not None:
            other.stop()
