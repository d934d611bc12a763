"""The safety loop by SMS, against the alerts service as a process, real Kafka,
PostgreSQL and Redis, and the local Twilio-compatible server; dispatch's events are
published as dispatch publishes them.

Four members, one per language, accept and report on the way and on scene in their
language; a roll call is answered OK by two and not by the others (and is texted once
per member however often the event comes); everyone is released; two say they are home
safe, the others get one reminder when dispatch flags them overdue; one says home safe
after the emergency closed. Nothing moves backwards, an OK with no roll call open and
text nobody understands get the help text."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts import messages
from shared.events.catalog import make_envelope
from shared.events.envelope import Envelope, decode
from shared.events.topics import dead_letter_topic
from tests.alerts.answers_support import message_of, sms
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
    overdue,
    responses,
    roll_call,
    status_set,
)
from tests.conftest import Topics
from tests.support.kafka import publish, read_records
from tests.support.processes import start_service

#: per language: accept, on the way, on scene, home safe, the roll call's OK
WORDS = {
    "en": ("YES 10", "On my way", "ARRIVED", "SAFE", "OK"),
    "fr": ("oui 10", "en route", "ARRIVÉ", "rentré", "D'ACCORD"),
    "it": ("SI 10", "IN ARRIVO", "arrivato", "A CASA", "va bene"),
    "sq": ("PO 10", "NË RRUGË", "MBËRRITA", "në shtëpi", "MIRË"),
}


async def test_the_safety_loop_by_sms_in_four_languages(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    people = {
        lang: member(lat=CENTRE[0] + i * 0.001, language=lang) for i, lang in enumerate(WORDS)
    }
    en, fr, it, sq = people["en"], people["fr"], people["it"], people["sq"]
    everyone = list(people.values())
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), everyone)
    service = start_service("alerts", alerts_env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, everyone)
        emergency = declared(radius_m=5000, members_needed=4, title="Flood")
        eid = emergency.emergency_id
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), emergency)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 4, 30)

        def texts(who) -> list[str]:  # type: ignore[no-untyped-def]
            return [m.body for m in twilio.to(who.phone or "")]

        async def each_got(who: list, kind: str) -> bool:  # type: ignore[type-arg]
            def done(_: object) -> bool:
                return all(
                    messages.follow_up_sms(kind, language=m.language, title="Flood", drill=False)
                    in texts(m)
                    for m in who
                )

            return bool(await twilio.wait_for_async(done, 30))

        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:

            async def say(who, body: str) -> str:  # type: ignore[no-untyped-def]
                reply = await sms(client, who.phone or "", body)
                assert reply.status_code == 200, reply.text
                return message_of(reply)

            help_en = messages.text("en", "help")
            # OK with no roll call open is not understood: the help text, never a guess
            assert await say(en, "OK") == help_en
            for lang, who in people.items():
                accept, on_the_way, on_scene, _, _ = WORDS[lang]
                eta = messages.text(lang, "eta", m=10)
                assert await say(who, accept) == messages.text(lang, "accepted", eta=eta)
                assert await say(who, on_the_way) == messages.text(lang, "en_route")
                assert await say(who, on_scene) == messages.text(lang, "arrived")
            # never back: on the way again, or YES / NO, once on scene
            state = messages.text("en", "state_on_scene")
            already = messages.text("en", "already", state=state)
            assert await say(en, "ON MY WAY") == already
            assert await say(en, "NO") == already
            assert await say(en, "blah blah") == help_en
            assert await say(en, "OK HOME now") == help_en

            # a roll call: each member texted once in their language, even when dispatch
            # sends the event again (a new event id, the same roll call)
            first = roll_call(eid, [m.member_id for m in everyone])
            # a bad roll call ahead of it on the same partition: dead-lettered, not blocking
            bad = Envelope(
                type=first.event_type,
                source="muster.dispatch",
                subject=str(eid),
                data={"emergency_id": str(eid), "member_ids": ["not a member id"]},
            )
            await publish(topics.bootstrap, topics(EMERGENCIES), [bad])
            await dispatch_says(topics, first)
            assert await each_got(everyone, "roll_call")
            await dispatch_says(topics, first.model_copy())
            # the same event redelivered (same id): processed once
            await publish(
                topics.bootstrap,
                topics(EMERGENCIES),
                [make_envelope(first, source="muster.dispatch")],
            )
            await asyncio.sleep(2.0)
            for lang, who in people.items():
                asked = messages.follow_up_sms(
                    "roll_call", language=lang, title="Flood", drill=False
                )
                assert texts(who).count(asked) == 1, (lang, texts(who))

            assert await say(en, WORDS["en"][4]) == messages.text("en", "roll_call_ok")
            assert await say(fr, WORDS["fr"][4]) == messages.text("fr", "roll_call_ok")
            # answered already: a second OK has no roll call to answer
            assert await say(en, "OK") == help_en

            # the coordinator releases everyone: each is told to reply SAFE when home
            await dispatch_says(
                topics, *(status_set(eid, m.member_id, "released") for m in everyone)
            )
            assert await each_got(everyone, "released")
            for lang, who in people.items():
                assert messages.follow_up_sms(
                    "released", language=lang, title="Flood", drill=False
                ) in texts(who)
            # a released member cannot go back on scene
            assert await say(it, WORDS["it"][2]) == messages.text(
                "it", "already", state=messages.text("it", "state_released")
            )

            # two are home safe; the other two are flagged overdue by dispatch: one reminder
            assert await say(en, WORDS["en"][3]) == messages.text("en", "home_safe")
            assert await say(fr, WORDS["fr"][3]) == messages.text("fr", "home_safe")
            await dispatch_says(
                topics,
                overdue(eid, it.member_id),
                overdue(eid, sq.member_id),
                overdue(eid, en.member_id),  # home already: no reminder
                overdue(eid, uuid.uuid4()),  # never alerted here: skipped
                status_set(uuid.uuid4(), en.member_id, "released"),  # unknown emergency
            )
            assert await each_got([it, sq], "overdue")
            await dispatch_says(topics, overdue(eid, it.member_id))  # flagged again: no repeat
            # the emergency closes; a member still out can say they are home safe after it
            await dispatch_says(topics, closed(eid))
            await asyncio.sleep(2.0)
            reminder_it = messages.follow_up_sms(
                "overdue", language="it", title="Flood", drill=False
            )
            assert texts(it).count(reminder_it) == 1
            reminder_en = messages.follow_up_sms(
                "overdue", language="en", title="Flood", drill=False
            )
            assert reminder_en not in texts(en)
            assert await say(sq, WORDS["sq"][3]) == messages.text("sq", "home_safe")
            # but nothing else once it is closed
            assert await say(it, "ARRIVATO") == messages.text("it", "closed")

        events = await responses(topics, 3 * 4 + 3 + 2)
        assert answers_of(events, en.member_id) == [
            ("accepted", "sms"),
            ("en_route", "sms"),
            ("on_scene", "sms"),
            ("home_safe", "sms"),
        ]
        for who in (fr, sq):
            assert [a for a, _ in answers_of(events, who.member_id)] == [
                "accepted",
                "en_route",
                "on_scene",
                "home_safe",
            ]
        assert [a for a, _ in answers_of(events, it.member_id)] == [
            "accepted",
            "en_route",
            "on_scene",
        ]
        assert confirmations(events) == sorted(
            [
                (str(en.member_id), str(first.roll_call_id), "sms"),
                (str(fr.member_id), str(first.roll_call_id), "sms"),
            ]
        )
        async with admin_engine.connect() as conn:
            states = dict(
                (
                    await conn.execute(text(f'SELECT member_id, response FROM "{schema}".alerts'))
                ).all()
            )
            open_calls = (
                (
                    await conn.execute(
                        text(
                            f'SELECT member_id FROM "{schema}".roll_call_members '
                            "WHERE confirmed_at IS NULL ORDER BY member_id"
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert states == {
            en.member_id: "home_safe",
            fr.member_id: "home_safe",
            it.member_id: "released",
            sq.member_id: "home_safe",
        }
        assert sorted(open_calls) == sorted([it.member_id, sq.member_id])
        # only the bad roll call was dead-lettered: unknown members and emergencies are
        # skipped, never an error
        dead = await read_records(
            topics.bootstrap,
            [dead_letter_topic(topics(EMERGENCIES))],
            until=lambda rs: len(rs) >= 1,
        )
        await asyncio.sleep(1.0)
        dead = await read_records(
            topics.bootstrap,
            [dead_letter_topic(topics(EMERGENCIES))],
            until=lambda rs: False,
            timeout_s=2.0,
        )
        assert [dict(r.headers)["muster.dlq.reason"] for r in dead] == [b"invalid_data"]
        assert decode(dead[0].value, dead[0].headers, dead[0].key).id == bad.id
    finally:
        service.stop()


async def test_a_loop_reply_that_could_be_for_two_emergencies_asks_for_the_code(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    tmp_path: Path,
) -> None:
    """Released from one emergency and coming to another: SAFE could be for either, so the
    member is asked for the code (with an example of their kind of reply), never guessed."""
    who = member(lat=CENTRE[0], language="en")
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [who])
    service = start_service("alerts", alerts_env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, [who])
        flood = declared(radius_m=5000, members_needed=1, title="Flood")
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), flood)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 1, 30)
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:

            async def say(body: str) -> str:
                reply = await sms(client, who.phone or "", body)
                assert reply.status_code == 200, reply.text
                return message_of(reply)

            await say("YES")
            await say("ARRIVED")
            # released from the flood, so free to be alerted for the fire
            await dispatch_says(topics, status_set(flood.emergency_id, who.member_id, "released"))
            released = messages.follow_up_sms("released", language="en", title="Flood", drill=False)
            assert await twilio.wait_for_async(lambda ms: released in [m.body for m in ms], 30)
            fire = declared(radius_m=5000, members_needed=1, title="Fire", severity="Extreme")
            await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), fire)
            assert await twilio.wait_for_async(
                lambda ms: any(m.body.startswith("MUSTER Fire.") for m in ms), 30
            )
            fire_sms = next(m.body for m in twilio.to(who.phone or "") if "Fire." in m.body)
            coded = re.search(r"YES ([A-Z][0-9A-Z]{2})", fire_sms)
            assert coded, fire_sms
            fire_code = coded.group(1)
            assert (await say(f"YES {fire_code}")).startswith("Thank you, you are expected")

            question = await say("SAFE")
            assert question.startswith("You have several alerts: add the code, e.g. SAFE ")
            assert f"{fire_code} Fire" in question and "Flood" in question
            flood_code = re.search(r"([A-Z][0-9A-Z]{2}) Flood", question)
            assert flood_code, question
            assert await say(f"SAFE {flood_code.group(1)}") == messages.text("en", "home_safe")
            # now only the fire's alert can move: no question
            assert await say("ON MY WAY") == messages.text("en", "en_route")

        events = await responses(topics, 5)
        by_emergency = sorted(
            (e.data["emergency_id"], e.data["answer"])
            for e in events
            if e.type == "muster.response.received.v1"
        )
        assert by_emergency == sorted(
            [
                (str(flood.emergency_id), "accepted"),
                (str(flood.emergency_id), "on_scene"),
                (str(flood.emergency_id), "home_safe"),
                (str(fire.emergency_id), "accepted"),
                (str(fire.emergency_id), "en_route"),
            ]
        )
    finally:
        service.stop()
