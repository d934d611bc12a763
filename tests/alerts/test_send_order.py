"""Two emergencies declared back to back share the provider fairly: the second one's
nearest members do not wait for the whole first fan-out (alerts are sent by rank in
their wave, then by age)."""

from __future__ import annotations

import asyncio
from pathlib import Path

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

FAR = (CENTRE[0] + 0.3, CENTRE[1])  # ~33 km north


async def test_a_second_emergency_is_not_queued_behind_the_first(
    alerts_env: dict[str, str], twilio: FakeTwilio, topics: Topics, redis_client, tmp_path: Path
) -> None:
    first = [member(lat=CENTRE[0] + i * 0.0001) for i in range(150)]
    second = [member(lat=FAR[0] + i * 0.0001, lon=FAR[1]) for i in range(20)]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [*first, *second])
    env = {**alerts_env, "ALERTS_SMS_RATE_PER_S": "50", "ALERTS_SENDER_CONCURRENCY": "1"}
    service = start_service("alerts", env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, [*first, *second])
        a = declared(radius_m=3000, members_needed=50, title="First")
        b = declared(radius_m=3000, members_needed=10, title="Second")
        b = b.model_copy(update={"area": b.area.model_copy(update={"lat": FAR[0], "lon": FAR[1]})})
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), a, b)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 170, 60)
        await asyncio.sleep(0.5)
        titles = ["Second" in m.body for m in twilio.messages]
        assert len(titles) == 170
        first_of_second = titles.index(True)
        # the second emergency started while the first had most of its 150 SMS to go
        assert first_of_second < 60, first_of_second
        # and within each emergency, nearest first
        order = {m.phone: i for i, m in enumerate([*first, *second])}
        for wanted in (False, True):
            sent = [
                order[m.to] for m, t in zip(twilio.messages, titles, strict=True) if t == wanted
            ]
            assert sent == sorted(sent)
    finally:
        service.stop()
