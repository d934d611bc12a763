"""Replies to concurrent emergencies, against alerts as a process (issue 10, defect 15):
dispatch's code is understood (`YES R7V 10` answers the right emergency), codes are unique
among a member's open alerts even when dispatch proposes the same one twice, a webhook
replayed with the same MessageSid answers the same and changes nothing, and an old YES
replayed never overrides a later NO."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.topics import RESPONSES
from shared.reply_codes import is_reply_code
from tests.alerts.answers_support import message_of, signed
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


async def test_codes_are_read_unique_and_replays_change_nothing(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    who = member(lat=CENTRE[0], language="en")
    phone = who.phone or ""
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [who])
    service = start_service("alerts", alerts_env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, [who])
        # dispatch freed R7V on a close alerts has not applied yet and gave it again
        first = declared(radius_m=2000, members_needed=1, title="Flood", reply_code="R7V")
        second = declared(radius_m=2000, members_needed=1, title="Fire", reply_code="R7V")
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), first)
        assert await twilio.wait_for_async(lambda _: len(twilio.to(phone)) >= 1, 30)
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), second)
        assert await twilio.wait_for_async(lambda _: len(twilio.to(phone)) >= 2, 30)
        fire_sms = twilio.to(phone)[1].body
        found = re.search(r"YES ([A-Z0-9]{3}) ", fire_sms)
        assert found, fire_sms
        fire_code = found.group(1)
        assert is_reply_code(fire_code) and fire_code != "R7V"

        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:

            async def reply(body: str, sid: str) -> str:
                params = {"From": phone, "To": "+15005550006", "Body": body, "MessageSid": sid}
                response = await client.post(
                    "/sms/inbound", data=params, headers=signed("/sms/inbound", params)
                )
                assert response.status_code == 200, response.text
                return message_of(response)

            question = await reply("YES 10", "SM" + "1" * 32)
            assert "R7V Flood" in question and f"{fire_code} Fire" in question, question
            accepted = await reply("YES R7V 10", "SM" + "2" * 32)
            assert accepted.startswith("Thank you, you are expected in 10 min"), accepted
            assert (await reply(f"no {fire_code}", "SM" + "3" * 32)).startswith("Thank you")
            # then the member changes their mind about the flood
            assert (await reply("NO R7V", "SM" + "4" * 32)).startswith("Thank you")
            # the old YES is delivered again (a provider retry, or a replayed capture)
            replayed = await reply("YES R7V 10", "SM" + "2" * 32)
            assert replayed == accepted
            missing_sid = await client.post(
                "/sms/inbound",
                data={"From": phone, "Body": "YES"},
                headers=signed("/sms/inbound", {"From": phone, "Body": "YES"}),
            )
            assert missing_sid.status_code == 422 and "MessageSid" in missing_sid.text

        async with admin_engine.connect() as conn:
            answers: dict[str, str | None] = dict(
                (
                    await conn.execute(
                        text(
                            f'SELECT e.title, a.response FROM "{schema}".alerts a '
                            f'JOIN "{schema}".emergencies e ON e.id = a.emergency_id'
                        )
                    )
                ).all()
            )
            inbound = (
                await conn.execute(
                    text(
                        f'SELECT provider_sid, outcome FROM "{schema}".inbound_messages ORDER BY id'
                    )
                )
            ).all()
        assert answers == {"Flood": "declined", "Fire": "declined"}
        assert [r.outcome for r in inbound] == ["ambiguous", "accepted", "declined", "declined"]
        responses = await read_events(topics.bootstrap, [topics(RESPONSES)], count=3, settle_s=1.5)
        # per emergency (its key), in order; the replayed YES published nothing
        got: dict[str, list[tuple[str, int | None]]] = {}
        for e in responses:
            got.setdefault(e.data["emergency_id"], []).append(
                (e.data["answer"], e.data["eta_minutes"])
            )
        assert got == {
            str(first.emergency_id): [("accepted", 10), ("declined", None)],
            str(second.emergency_id): [("declined", None)],
        }
    finally:
        service.stop()
