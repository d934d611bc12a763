"""The channel ladder end to end (issue 11), against alerts as a process and the local
Twilio-compatible server playing the voice side: it fetches our TwiML when a call is
placed (signed as Twilio signs), posts the keys pressed and the final status back.

The ladder's delays are shortened to seconds; no test asserts when a call came, only
which calls came and which never did (after several more of the ladder's rounds)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.emergencies import EmergencyClosed, EmergencyUpdated
from shared.events.envelope import Envelope
from shared.events.topics import ALERTS, RESPONSES
from tests.alerts.answers_support import sms
from tests.alerts.conftest import PUBLIC_BASE
from tests.alerts.fake_twilio import Call, FakeTwilio
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

LADDER = {
    "ALERTS_LADDER_DELAY_EXTREME_S": "2",
    "ALERTS_LADDER_DELAY_SEVERE_S": "3",
    "ALERTS_LADDER_DELAY_OTHER_S": "3",
    "ALERTS_LADDER_INTERVAL_S": "0.5",
}
#: long enough for several ladder rounds past every delay above
QUIET_PERIOD_S = 5.0


def gather_actions(twiml: str) -> list[str]:
    return [g.get("action") or "" for g in ET.fromstring(twiml).iter("Gather")]


def spoken(twiml: str) -> str:
    return " ".join(s.text or "" for s in ET.fromstring(twiml).iter("Say"))


async def events(topics: Topics, topic: str, count: int) -> list[Envelope]:
    return await read_events(topics.bootstrap, [topics(topic)], count=count, settle_s=1.0)


async def test_an_unanswered_sms_is_followed_by_one_call_whose_keys_answer(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    silent = member(lat=CENTRE[0], language="en")
    texted = member(lat=CENTRE[0] + 0.001, language="en")
    albanian = member(lat=CENTRE[0] + 0.002, language="sq")
    people = [silent, texted, albanian]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), people)
    service = start_service("alerts", {**alerts_env, **LADDER}, tmp_path)
    twilio.route(PUBLIC_BASE, service.url)
    try:
        await wait_indexed(redis_client, topics.prefix, people)
        emergency = declared(radius_m=2000, members_needed=10, title="Flood Fier")
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), emergency)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 3, 30)
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            # an SMS answer before the delay: that member is never called
            assert (await sms(client, texted.phone or "", "YES 5")).status_code == 200

        calls = await twilio.wait_for_calls(2)
        await asyncio.sleep(QUIET_PERIOD_S)
        assert sorted(c.to for c in twilio.calls) == sorted(
            [silent.phone or "", albanian.phone or ""]
        )
        call = twilio.calls_to(silent.phone or "")[0]
        assert call.caller == "+15005550006"
        assert call.url.startswith(f"{PUBLIC_BASE}/voice/") and call.url.endswith("/call")
        assert str(silent.member_id) not in call.url + call.status_callback

        # picked up: the alert, in English, asking for 1 or 2
        menu = await twilio.wait_for_twiml(call)
        assert "Flood Fier" in spoken(menu) and "Press 1" in spoken(menu), menu
        menu_action = gather_actions(menu)[0]
        # keys nobody understands: the prompt again, never a 5xx
        again = await twilio.press(call, menu_action, "7")
        assert again.status_code == 200 and "did not understand" in spoken(again.text)
        coming = await twilio.press(call, menu_action, "1")
        assert coming.status_code == 200 and "how many minutes" in spoken(coming.text).lower()
        minutes_action = gather_actions(coming.text)[0]
        for bad in ("99999", "", "*3"):
            retry = await twilio.press(call, minutes_action, bad)
            assert retry.status_code == 200 and "did not understand" in spoken(retry.text)
        done = await twilio.press(call, minutes_action, "15")
        assert done.status_code == 200 and "expected in 15 minutes" in spoken(done.text)
        # fetched again now (a retried webhook): the answer stands, the call only says so
        again_menu = await twilio.pick_up(call)
        assert "answer is recorded already" in spoken(again_menu) and not gather_actions(again_menu)
        assert (await twilio.end(call, "completed")).status_code == 204
        # a replayed status callback publishes nothing more
        assert (await twilio.end(call, "completed")).status_code == 204

        # a forged key press is refused before anything changes
        async with httpx.AsyncClient(timeout=10) as client:
            path = menu_action.removeprefix(PUBLIC_BASE)
            wrong = await client.post(
                service.url + path,
                data={"CallSid": call.sid, "Digits": "2"},
                headers={"X-Twilio-Signature": "bm90IGl0"},
            )
            assert wrong.status_code == 403
            unsigned = await client.post(service.url + path, data={"Digits": "2"})
            assert unsigned.status_code == 403

        # Albanian: Twilio has no voice for it, alerts plays its own rendering
        sq_call = twilio.calls_to(albanian.phone or "")[0]
        sq_menu = await twilio.wait_for_twiml(sq_call)
        played = [p.text or "" for p in ET.fromstring(sq_menu).iter("Play")]
        assert played and played[0].startswith(f"{PUBLIC_BASE}/voice/"), sq_menu
        async with httpx.AsyncClient(timeout=30) as client:
            wav = await client.get(service.url + played[0].removeprefix(PUBLIC_BASE))
        assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
        assert wav.content[:4] == b"RIFF"
        async with httpx.AsyncClient(timeout=30) as client:
            root = service.url + played[0].removeprefix(PUBLIC_BASE).rsplit("/", 1)[0]
            assert (await client.get(f"{root}/nonsense.wav")).status_code == 404
            assert (
                await client.get(f"{service.url}/voice/unknown/audio/alert.wav")
            ).status_code == 404
        declined = await twilio.press(sq_call, gather_actions(sq_menu)[0], "2")
        assert declined.status_code == 200
        assert (await twilio.end(sq_call, "completed")).status_code == 204

        responses = await events(topics, RESPONSES, 3)
        got = sorted(
            (e.data["member_id"], e.data["answer"], e.data["eta_minutes"], e.data["channel"])
            for e in responses
        )
        assert got == sorted(
            [
                (str(texted.member_id), "accepted", 5, "sms"),
                (str(silent.member_id), "accepted", 15, "voice"),
                (str(albanian.member_id), "declined", None, "voice"),
            ]
        )
        alert_events = await events(topics, ALERTS, 7)
        placed = sorted(
            e.data["member_id"] for e in alert_events if e.type == "muster.alert.call_placed.v1"
        )
        assert placed == sorted([str(silent.member_id), str(albanian.member_id)])
        ended = [
            (e.data["member_id"], e.data["outcome"])
            for e in alert_events
            if e.type == "muster.alert.call_ended.v1"
        ]
        assert sorted(ended) == sorted(
            [(str(silent.member_id), "answered"), (str(albanian.member_id), "answered")]
        )
        async with admin_engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(f'SELECT status, outcome, provider_sid FROM "{schema}".voice_calls')
                )
            ).all()
        assert sorted((r.status, r.outcome) for r in rows) == [("ended", "answered")] * 2
        assert {r.provider_sid for r in rows} == {c.sid for c in calls}
    finally:
        service.stop()


def quiet_now(zone: str = "Europe/Tirane") -> tuple[time, time]:
    local = datetime.now(ZoneInfo(zone))
    return (
        (local - timedelta(hours=1)).time().replace(second=0, microsecond=0),
        (local + timedelta(hours=1)).time().replace(second=0, microsecond=0),
    )


async def test_staffed_closed_cancelled_and_quiet_hours_place_no_call(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    tmp_path: Path,
) -> None:
    # one member per emergency: each its own section
    staffed_m, closed_m, cancelled_m, quiet_m, extreme_m = (
        member(section=f"S{i}", language="en") for i in range(5)
    )
    extreme_m = member(section="S4", language="en", quiet=quiet_now())
    people = [staffed_m, closed_m, cancelled_m, quiet_m, extreme_m]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), people)
    service = start_service("alerts", {**alerts_env, **LADDER}, tmp_path)
    twilio.route(PUBLIC_BASE, service.url)
    try:
        await wait_indexed(redis_client, topics.prefix, people)
        staffed, closed, cancelled, quiet = (
            declared(section=f"S{i}", members_needed=3, title=f"E{i}") for i in range(4)
        )
        extreme = declared(section="S4", members_needed=3, severity="Extreme", title="E4")
        for emergency in (staffed, closed, cancelled, quiet, extreme):
            await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), emergency)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 5, 30)
        now = datetime.now(UTC)
        staffed_update = EmergencyUpdated(
            **{
                **staffed.model_dump(exclude={"declared_at"}),
                "staffed": True,
                "changed": [],
                "updated_at": now,
            }
        )
        await publish_emergency_event(
            topics.bootstrap,
            topics(EMERGENCIES),
            staffed_update,
            EmergencyClosed(emergency_id=closed.emergency_id, reason="resolved", closed_at=now),
            EmergencyClosed(emergency_id=cancelled.emergency_id, reason="cancelled", closed_at=now),
        )
        # the quiet member's hours begin after their alert (selection leaves out members
        # in quiet hours below Extreme)
        quiet_later = quiet_m.model_copy(
            update={"version": 2, "quiet_hours": member(quiet=quiet_now()).quiet_hours}
        )
        await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [quiet_later])
        await wait_indexed(redis_client, topics.prefix, [quiet_later])

        # Extreme overrides quiet hours, as for SMS
        await twilio.wait_for_calls(1)
        await asyncio.sleep(QUIET_PERIOD_S)
        assert [c.to for c in twilio.calls] == [extreme_m.phone]

        # held, not dropped: once the quiet hours are gone, the call comes
        awake = quiet_m.model_copy(update={"version": 3, "quiet_hours": None})
        await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [awake])
        await twilio.wait_for_calls(2)
        await asyncio.sleep(QUIET_PERIOD_S)
        assert [c.to for c in twilio.calls] == [extreme_m.phone, quiet_m.phone]

        # how each call ended reaches the board's topic; ringing is not an end
        first, second = twilio.calls
        assert (await twilio.end(first, "ringing")).status_code == 204
        assert (await twilio.end(first, "no-answer")).status_code == 204
        assert (await twilio.end(second, "busy")).status_code == 204
        alert_events = await events(topics, ALERTS, 4)
        ended = sorted(
            (e.data["member_id"], e.data["outcome"])
            for e in alert_events
            if e.type == "muster.alert.call_ended.v1"
        )
        assert ended == sorted(
            [(str(extreme_m.member_id), "no_answer"), (str(quiet_m.member_id), "busy")]
        )
    finally:
        service.stop()


async def test_sigkill_between_placing_and_recording_places_no_second_call(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    victim = member(language="fr")
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [victim])
    # the provider places the call, then the process holds it 30 s before recording it
    crashing = start_service(
        "alerts", {**alerts_env, **LADDER, "ALERTS_FAULT_PAUSE_AFTER_CALL_S": "30"}, tmp_path
    )
    successor = None
    try:
        await wait_indexed(redis_client, topics.prefix, [victim])
        emergency = declared(members_needed=3, title="Incendie")
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), emergency)
        await twilio.wait_for_calls(1)
        crashing.kill()
        query = text(f'SELECT status, provider_sid FROM "{schema}".voice_calls')
        async with admin_engine.connect() as conn:
            assert [tuple(r) for r in (await conn.execute(query)).all()] == [("placing", None)]

        successor = start_service("alerts", {**alerts_env, **LADDER}, tmp_path)
        await asyncio.sleep(QUIET_PERIOD_S)
        assert len(twilio.call_requests) == 1 and len(twilio.calls) == 1

        # the call itself went on: its webhooks find it by the token in their URLs
        twilio.route(PUBLIC_BASE, successor.url)
        call: Call = twilio.calls[0]
        menu = await twilio.pick_up(call)
        assert "Incendie" in spoken(menu) and "Appuyez sur 1" in spoken(menu)
        coming = await twilio.press(call, gather_actions(menu)[0], "1")
        done = await twilio.press(call, gather_actions(coming.text)[0], "20")
        assert "attendu dans 20 minutes" in spoken(done.text)
        assert (await twilio.end(call, "completed")).status_code == 204
        async with admin_engine.connect() as conn:
            rows = [tuple(r) for r in (await conn.execute(query)).all()]
        assert rows == [("ended", call.sid)]
        alert_events = await events(topics, ALERTS, 3)
        kinds = [e.type for e in alert_events if "call" in e.type]
        assert kinds == ["muster.alert.call_placed.v1", "muster.alert.call_ended.v1"]
        responses = await events(topics, RESPONSES, 1)
        answers = [(e.data["answer"], e.data["eta_minutes"], e.data["channel"]) for e in responses]
        assert answers == [("accepted", 20, "voice")]
    finally:
        crashing.kill()
        if successor is not None:
            successor.stop()


async def test_two_alerts_processes_call_each_member_once(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    people = [member(lat=CENTRE[0] + i * 0.0005, language="it") for i in range(8)]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), people)
    env = {**alerts_env, **LADDER, "ALERTS_LADDER_INTERVAL_S": "0.2"}
    first = start_service("alerts", env, tmp_path)
    second = start_service("alerts", env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, people)
        emergency = declared(members_needed=10, severity="Extreme", title="Frana")
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), emergency)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 8, 30)
        await twilio.wait_for_calls(8)
        await asyncio.sleep(QUIET_PERIOD_S)
        assert len(twilio.call_requests) == 8
        assert sorted(c.to for c in twilio.calls) == sorted(m.phone or "" for m in people)
        async with admin_engine.connect() as conn:
            placed = (
                await conn.execute(
                    text(f"SELECT count(*) FROM \"{schema}\".voice_calls WHERE status = 'placed'")
                )
            ).scalar_one()
        assert placed == 8
    finally:
        first.stop()
        second.stop()
