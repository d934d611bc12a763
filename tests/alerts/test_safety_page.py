"""The safety loop through the `/r/{token}` page's buttons, against the alerts service as
a process (real Kafka, PostgreSQL, Redis, the local Twilio-compatible server): the
buttons change with the member's state, a stale button changes nothing (409), the roll
call's "I'm OK" shows only while one is open, "home safe" follows the release and still
works after the close for a member still out; the same events as by SMS, channel web."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from services.alerts import messages
from tests.alerts.answers_support import token_in
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
from tests.alerts.safety_support import (
    answers_of,
    closed,
    confirmations,
    dispatch_says,
    responses,
    roll_call,
    status_set,
)
from tests.conftest import Topics
from tests.support.processes import start_service


def offered(page: httpx.Response) -> list[str]:
    """The choices the page's form offers, in order."""
    return re.findall(r'name="choice" value="([^"]+)"', page.text)


async def test_the_safety_loop_by_the_answer_page(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    tmp_path: Path,
) -> None:
    en = member(lat=CENTRE[0], language="en")
    fr = member(lat=CENTRE[0] + 0.001, language="fr")
    sq = member(lat=CENTRE[0] + 0.002, language="sq")
    it = member(lat=CENTRE[0] + 0.003, language="it")
    everyone = [en, fr, sq, it]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), everyone)
    service = start_service("alerts", alerts_env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, everyone)
        emergency = declared(radius_m=5000, members_needed=4, title="Search")
        eid = emergency.emergency_id
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), emergency)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 4, 30)
        page_of = {
            m.member_id: f"/r/{token_in(twilio.to(m.phone or '')[0].body)}" for m in everyone
        }
        coming = ["5", "10", "15", "30", "60", "no"]

        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:

            async def press(who, choice: str, status: int = 200) -> httpx.Response:  # type: ignore[no-untyped-def]
                answered = await client.post(page_of[who.member_id], data={"choice": choice})
                assert answered.status_code == status, (choice, answered.text)
                return answered

            async def show(who, status: int = 200) -> httpx.Response:  # type: ignore[no-untyped-def]
                page = await client.get(page_of[who.member_id])
                assert page.status_code == status, page.text
                return page

            assert offered(await show(en)) == coming
            bogus = await client.post(page_of[en.member_id], data={"choice": "released"})
            assert bogus.status_code == 422 and "choice" in bogus.text
            # before coming, the loop's buttons do not apply
            await press(en, "home_safe", 409)
            assert offered(await press(en, "15")) == ["en_route", "on_scene", "no"]
            assert "On my way" in (await show(en)).text
            assert offered(await press(en, "en_route")) == ["on_scene"]
            # pressed twice: the same state, nothing new recorded
            assert offered(await press(en, "en_route")) == ["on_scene"]
            # a stale page: coming again, changes nothing
            stale = await press(en, "10", 409)
            assert messages.text("en", "page_not_now") in stale.text
            arrived = await press(en, "on_scene")
            assert offered(arrived) == []
            assert "Your status: on scene." in arrived.text
            await press(en, "en_route", 409)  # never back
            await press(en, "roll_call_ok", 409)  # no roll call open

            for who in (fr, sq, it):
                await press(who, "10")
            assert offered(await press(it, "en_route")) == ["on_scene"]
            assert offered(await press(fr, "on_scene")) == []

            # a roll call: "I'm OK" while it is open for them, gone once answered
            call = roll_call(eid, [en.member_id, fr.member_id])
            await dispatch_says(topics, call)

            async def roll_call_shown() -> bool:
                for _ in range(100):
                    if "roll_call_ok" in offered(await show(en)):
                        return True
                    await asyncio.sleep(0.2)
                return False

            assert await roll_call_shown()
            page = await show(en)
            assert "Roll call: are you OK?" in page.text and "I&#39;m OK" in page.text
            assert offered(await show(fr)) == ["roll_call_ok"]
            assert offered(await show(sq)) == ["en_route", "on_scene", "no"]  # not asked
            assert offered(await press(en, "roll_call_ok")) == []
            await press(en, "roll_call_ok", 409)

            # released by the coordinator: "home safe" is offered
            await dispatch_says(topics, status_set(eid, en.member_id, "released"))
            await dispatch_says(topics, status_set(eid, fr.member_id, "released"))
            for _ in range(100):
                if offered(await show(fr)) == ["roll_call_ok", "home_safe"]:
                    break
                await asyncio.sleep(0.2)
            assert offered(await show(en)) == ["home_safe"]
            # the roll call fr never answered is still open for them
            assert offered(await show(fr)) == ["roll_call_ok", "home_safe"]
            assert offered(await press(en, "home_safe")) == []
            assert "Your status: home safe." in (await show(en)).text
            await press(en, "on_scene", 409)

            # the close: fr and it are still out and may still say they are home; sq never
            # left. The stand-down asks the member on the way to say when they are home.
            await dispatch_says(topics, closed(eid))

            def stood_down(who, kind: str) -> bool:  # type: ignore[no-untyped-def]
                body = messages.follow_up_sms(
                    kind, language=who.language, title="Search", drill=False
                )
                return body in [m.body for m in twilio.to(who.phone or "")]

            assert await twilio.wait_for_async(
                lambda _: stood_down(it, "stand_down_out") and stood_down(sq, "stand_down"), 30
            )
            assert not stood_down(fr, "stand_down") and not stood_down(fr, "stand_down_out")
            for _ in range(100):
                if (await client.get(page_of[sq.member_id])).status_code == 410:
                    break
                await asyncio.sleep(0.2)
            await show(sq, 410)
            await press(sq, "on_scene", 410)
            await show(en, 410)
            after = await show(fr)
            assert offered(after) == ["home_safe"] and 'lang="fr"' in after.text
            assert "Je suis rentré" in after.text
            await press(fr, "roll_call_ok", 410)
            assert offered(await press(fr, "home_safe")) == []
            assert offered(await show(it)) == ["home_safe"]
            await press(it, "home_safe")

        events = await responses(topics, 4 + 3 + 1 + 3 + 1)
        assert answers_of(events, en.member_id) == [
            ("accepted", "web"),
            ("en_route", "web"),
            ("on_scene", "web"),
            ("home_safe", "web"),
        ]
        assert answers_of(events, fr.member_id) == [
            ("accepted", "web"),
            ("on_scene", "web"),
            ("home_safe", "web"),
        ]
        assert answers_of(events, sq.member_id) == [("accepted", "web")]
        assert [a for a, _ in answers_of(events, it.member_id)] == [
            "accepted",
            "en_route",
            "home_safe",
        ]
        assert confirmations(events) == [(str(en.member_id), str(call.roll_call_id), "web")]
    finally:
        service.stop()
