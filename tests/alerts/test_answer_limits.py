"""The answer page is rate-limited per token and per address; STOP holds until START;
HELP answers; an acceptance on the web after staffing is a standby, and a member on
standby is not alerted for another emergency."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from shared.events.emergencies import EmergencyUpdated
from tests.alerts.answers_support import message_of, sms, token_in
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
from tests.support.processes import start_service


async def test_page_limits_stop_start_help_and_web_standby(
    alerts_env: dict[str, str], twilio: FakeTwilio, topics: Topics, redis_client, tmp_path: Path
) -> None:
    people = [member(lat=CENTRE[0] + i * 0.001, language="en") for i in range(3)]
    a, b, c = people
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), people)
    env = {**alerts_env, "ALERTS_ANSWER_RATE_PER_TOKEN_PER_MIN": "3"}
    service = start_service("alerts", env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, people)
        first = declared(radius_m=2000, members_needed=1)
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), first)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 3, 30)
        token_a = token_in(twilio.to(a.phone or "")[0].body)
        token_b = token_in(twilio.to(b.phone or "")[0].body)
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            if time.time() % 60 > 50:  # keep the four requests in one minute window
                await asyncio.sleep(61 - time.time() % 60)
            statuses = [(await client.get(f"/r/{token_a}")).status_code for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
            assert (await client.get(f"/r/{token_b}")).status_code == 200

            assert "You will get no more" in message_of(await sms(client, c.phone or "", "stop"))
            assert "reply YES +minutes" in message_of(await sms(client, c.phone or "", "HELP"))
            now = datetime.now(UTC)
            staffed = EmergencyUpdated(
                **first.model_dump(exclude={"declared_at"}), staffed=True, updated_at=now
            )
            await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), staffed)
            assert await twilio.wait_for_async(
                lambda ms: sum("no longer needed" in m.body for m in ms) >= 2, 30
            )
            await asyncio.sleep(0.5)
            # c sent STOP: not even the "not needed" message goes out
            assert [m.body for m in twilio.to(c.phone or "")][1:] == []
            page = await client.post(f"/r/{token_b}", data={"choice": "15"})
            assert page.status_code == 200 and "you are on standby" in page.text

            assert "resumed" in message_of(await sms(client, c.phone or "", "START"))
            second = declared(radius_m=2000, members_needed=1, title="Second")
            await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), second)
            assert await twilio.wait_for_async(
                lambda ms: any(m.to == c.phone and "Second" in m.body for m in ms), 30
            )
            await asyncio.sleep(1.0)
            # b stands by for the first emergency: committed, not alerted again elsewhere
            second_to = {m.to for m in twilio.messages if "Second" in m.body}
            assert second_to == {a.phone, c.phone}
    finally:
        service.stop()
