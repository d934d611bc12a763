"""Drill answers by voice end to end (issue 12): alerts as real processes over real Kafka,
PostgreSQL and Redis; the local Twilio-compatible server sends the SMS and plays the
voice side (it fetches the call's TwiML signed as Twilio signs; the test presses keys);
the drills' clock is moved by the test (ALERTS_DRILL_CLOCK_OFFSET_FILE).

- A drill with `call_unanswered_after_min`: nobody is called before the delay; after it,
  the members who have not answered are called once, and not the one who answered by
  SMS, nor one who went out on an emergency since, nor one in quiet hours now. Pressing
  1 on the signed webhook is the member's OK by voice, timed when 1 was pressed (the 15
  minutes' bucket here); another key records nothing; a forged or unsigned webhook is
  refused and records nothing. The results count the answers by channel; the CSV has
  each call's outcome.
- With two alerts processes each unanswered member gets exactly one call; a process
  killed (SIGKILL) after the provider placed a call and before recording it leaves the
  claim, and the process after it never calls that member again.
- Without a voice provider the option is refused, naming the field.
"""

from __future__ import annotations

import asyncio
import csv
import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

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
from tests.alerts.test_drills_flow import FAR, drill_sms, eventually, set_clock, setup_env
from tests.conftest import Topics
from tests.support.processes import ServiceProcess, start_service
from tests.support.tokens import TestKey, bearer

TIRANA = ZoneInfo("Europe/Tirane")
#: several of the drill loop's rounds (ALERTS_DRILL_CHECK_INTERVAL_S is 0.5 s)
QUIET_PERIOD_S = 4.0


def drill_calls_to(twilio: FakeTwilio, phone: str | None) -> list[Call]:
    return [c for c in twilio.calls_to(phone or "") if "/voice-drill/" in c.url]


def spoken(twiml: str) -> str:
    return " ".join(s.text or "" for s in ET.fromstring(twiml).iter("Say"))


def gather_action(twiml: str) -> str:
    return next(g.get("action") or "" for g in ET.fromstring(twiml).iter("Gather"))


async def answered_at(
    engine: AsyncEngine, schema: str, member_id: object
) -> tuple[datetime | None, str | None]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    f'SELECT answered_at, answer_channel FROM "{schema}".drill_messages '
                    "WHERE member_id = :m"
                ),
                {"m": member_id},
            )
        ).one()
    return row.answered_at, row.answer_channel


async def test_a_drill_calls_its_unanswered_members_and_pressing_1_answers_by_voice(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client: redis.Redis,
    admin_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    key = TestKey()
    env, clock = setup_env(alerts_env, tmp_path, key)
    schema = env["MUSTER_DB_SCHEMA"]
    start = datetime.now(UTC).replace(microsecond=0)
    # quiet from 5 minutes after the drill's SMS to well after the call's time
    local = start.astimezone(TIRANA)
    quiet = (
        (local + timedelta(minutes=5)).time().replace(second=0),
        (local + timedelta(minutes=120)).time().replace(second=0),
    )
    silent = member(lat=FAR, language="en")
    texted = member(lat=FAR + 0.01, language="en")
    albanian = member(lat=FAR + 0.02, language="sq")
    sleeper = member(lat=FAR + 0.03, language="en", quiet=quiet)
    # at home in the emergency's circle: alerted for it after the drill's SMS went
    responder = member(lat=CENTRE[0], language="en")
    people = [silent, texted, albanian, sleeper, responder]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), people)
    service = start_service("alerts", env, tmp_path)
    twilio.route(PUBLIC_BASE, service.url)
    coordinator = bearer(key.token("coordinator", ["AL"], subject="coord-al"))
    try:
        await wait_indexed(redis_client, topics.prefix, people)
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            for value in (0, 121, "soon"):
                got = await client.post(
                    "/drills",
                    json={"sections": ["AL"], "call_unanswered_after_min": value},
                    headers=coordinator,
                )
                assert got.status_code == 422, (value, got.text)
                assert "call_unanswered_after_min" in got.json()["detail"][0]["loc"], got.text

            set_clock(clock, start)
            got = await client.post(
                "/drills",
                json={"sections": ["AL"], "call_unanswered_after_min": 10},
                headers=coordinator,
            )
            assert got.status_code == 201, got.text
            drill_id = got.json()["id"]
            assert got.json()["call_unanswered_after_min"] == 10
            await eventually(
                lambda: asyncio.sleep(0, [len(drill_sms(twilio, p)) for p in people]),
                lambda counts: counts == [1] * len(people),
                "drill SMS sent",
            )

            # one answers by SMS; another is alerted for an emergency meanwhile
            set_clock(clock, start + timedelta(minutes=3))
            assert (await sms(client, texted.phone or "", "OK")).status_code == 200
            await publish_emergency_event(
                topics.bootstrap, topics(EMERGENCIES), declared(radius_m=2000, members_needed=5)
            )
            assert await twilio.wait_for_async(
                lambda _: any(
                    "MUSTER TEST" not in m.body for m in twilio.to(responder.phone or "")
                ),
                60,
            )

            # not before the delay
            set_clock(clock, start + timedelta(minutes=9))
            await asyncio.sleep(QUIET_PERIOD_S)
            assert not any(drill_calls_to(twilio, p.phone) for p in people)

            # after it: the two who have not answered and are free and awake
            set_clock(clock, start + timedelta(minutes=11))
            await eventually(
                lambda: asyncio.sleep(
                    0, [len(drill_calls_to(twilio, p.phone)) for p in (silent, albanian)]
                ),
                lambda counts: counts == [1, 1],
                "drill calls placed",
            )
            await asyncio.sleep(QUIET_PERIOD_S)
            assert [len(drill_calls_to(twilio, p.phone)) for p in people] == [1, 0, 1, 0, 0]
            (call,) = drill_calls_to(twilio, silent.phone)
            assert call.url.startswith(f"{PUBLIC_BASE}/voice-drill/") and call.url.endswith("/call")
            assert str(silent.member_id) not in call.url + call.status_callback
            menu = await twilio.wait_for_twiml(call)
            assert "This is a Muster test, a drill, not an emergency" in spoken(menu), menu
            assert "Press 1 if you received this" in spoken(menu)
            action = gather_action(menu)

            # forged and unsigned key presses: refused, nothing recorded
            path = action.removeprefix(PUBLIC_BASE)
            forged = await client.post(
                path,
                data={"CallSid": call.sid, "Digits": "1"},
                headers={"X-Twilio-Signature": "bm90IGl0"},
            )
            assert forged.status_code == 403
            assert (await client.post(path, data={"Digits": "1"})).status_code == 403
            assert await answered_at(admin_engine, schema, silent.member_id) == (None, None)

            # 1, twelve minutes after the SMS: the OK by voice
            set_clock(clock, start + timedelta(minutes=12))
            pressed = await twilio.press(call, action, "1")
            assert pressed.status_code == 200, pressed.text
            assert "your answer is recorded" in spoken(pressed.text)
            at, channel = await answered_at(admin_engine, schema, silent.member_id)
            assert channel == "voice" and at is not None
            assert abs(at - (start + timedelta(minutes=12))) < timedelta(seconds=30)
            assert (await twilio.end(call, "completed")).status_code == 204

            # Albanian: alerts' own speech is played; a key other than 1 records nothing
            (sq_call,) = drill_calls_to(twilio, albanian.phone)
            sq_menu = await twilio.wait_for_twiml(sq_call)
            played = [p.text or "" for p in ET.fromstring(sq_menu).iter("Play")]
            assert played and played[0].startswith(f"{PUBLIC_BASE}/voice-drill/"), sq_menu
            wav = await client.get(played[0].removeprefix(PUBLIC_BASE))
            assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
            other_key = await twilio.press(sq_call, gather_action(sq_menu), "7")
            assert other_key.status_code == 200 and "<Hangup" in other_key.text
            assert await answered_at(admin_engine, schema, albanian.member_id) == (None, None)
            assert (await twilio.end(sq_call, "no-answer")).status_code == 204

            # the results: by channel, the voice OK within 15 minutes
            got = await client.get(f"/drills/{drill_id}", headers=coordinator)
            assert got.status_code == 200, got.text
            (occurrence,) = got.json()["occurrences"]
            assert occurrence["call_unanswered_after_min"] == 10
            overall = occurrence["results"]["overall"]
            assert overall["asked"] == 5 and overall["answered"] == 2
            assert overall["within"] == {"5": 1, "15": 2, "60": 2}
            assert overall["by_channel"] == {"sms": 1, "web": 0, "voice": 1}

            # the one whose call rang out unanswered is on the list to check
            got = await client.get("/drills/attention?section=AL&last=3", headers=coordinator)
            assert got.status_code == 200, got.text
            assert {r["member_id"]: r["reason"] for r in got.json()} == {
                str(albanian.member_id): "call_unanswered"
            }

            exported = await client.get(f"/drills/{drill_id}/results.csv", headers=coordinator)
            assert exported.status_code == 200, exported.text
            rows = {r["member_id"]: r for r in csv.DictReader(io.StringIO(exported.text))}
            assert rows[str(silent.member_id)]["answer_channel"] == "voice"
            assert rows[str(silent.member_id)]["call_outcome"] == "answered"
            assert rows[str(albanian.member_id)]["call_outcome"] == "no_answer"
            assert rows[str(texted.member_id)]["call_outcome"] == ""

        async with admin_engine.connect() as conn:
            placed = (
                await conn.execute(
                    text(f'SELECT status, token_hash FROM "{schema}".drill_calls ORDER BY status')
                )
            ).all()
        assert [p.status for p in placed] == ["ended", "ended"]
        # the token in the URL is not what is stored
        assert all(p.token_hash not in call.url + sq_call.url for p in placed)
    finally:
        service.stop()


async def test_two_alerts_processes_place_one_drill_call_per_member(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client: redis.Redis,
    admin_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    key = TestKey()
    env, clock = setup_env(alerts_env, tmp_path, key)
    schema = env["MUSTER_DB_SCHEMA"]
    people = [member(lat=FAR, language=("en", "fr", "it")[i % 3]) for i in range(12)]
    start = datetime.now(UTC).replace(microsecond=0)
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), people)
    services: list[ServiceProcess] = []
    try:
        services = [start_service("alerts", env, tmp_path) for _ in range(2)]
        await wait_indexed(redis_client, topics.prefix, people)
        coordinator = bearer(key.token("coordinator", ["AL"], subject="coord-al"))
        set_clock(clock, start)
        async with httpx.AsyncClient(base_url=services[1].url, timeout=30) as client:
            got = await client.post(
                "/drills",
                json={"sections": ["AL"], "call_unanswered_after_min": 1},
                headers=coordinator,
            )
            assert got.status_code == 201, got.text
        await eventually(
            lambda: asyncio.sleep(0, [len(drill_sms(twilio, p)) for p in people]),
            lambda counts: counts == [1] * len(people),
            "drill SMS sent",
        )
        set_clock(clock, start + timedelta(minutes=2))
        await eventually(
            lambda: asyncio.sleep(0, [len(drill_calls_to(twilio, p.phone)) for p in people]),
            lambda counts: all(c >= 1 for c in counts),
            "drill calls placed",
        )
        # both processes run many more rounds: still one call each
        await asyncio.sleep(QUIET_PERIOD_S)
        assert [len(drill_calls_to(twilio, p.phone)) for p in people] == [1] * len(people)
        async with admin_engine.connect() as conn:
            claimed_by = (
                (await conn.execute(text(f'SELECT claimed_by FROM "{schema}".drill_calls')))
                .scalars()
                .all()
            )
        assert len(claimed_by) == len(people)
    finally:
        for service in services:
            service.stop()


async def test_calls_are_refused_naming_the_field_where_alerts_has_no_voice_provider(
    alerts_env: dict[str, str], tmp_path: Path
) -> None:
    key = TestKey()
    env, _clock = setup_env(alerts_env, tmp_path, key)
    # a Messaging Service and no number to call from: voice calls are off
    env = {**env, "TWILIO_VOICE_FROM_NUMBER": "", "TWILIO_FROM_NUMBER": ""}
    service = start_service("alerts", env, tmp_path)
    coordinator = bearer(key.token("coordinator", ["AL"], subject="coord-al"))
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            got = await client.post(
                "/drills",
                json={"sections": ["AL"], "call_unanswered_after_min": 10},
                headers=coordinator,
            )
            assert got.status_code == 422, got.text
            assert got.json()["detail"][0]["loc"] == ["body", "call_unanswered_after_min"]
            assert "voice calls are off" in got.json()["detail"][0]["msg"]
            # without calls the drill is scheduled as before
            got = await client.post("/drills", json={"sections": ["AL"]}, headers=coordinator)
            assert got.status_code == 201, got.text
            assert got.json()["call_unanswered_after_min"] is None
    finally:
        service.stop()


async def test_a_process_killed_after_placing_a_drill_call_never_calls_again(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client: redis.Redis,
    admin_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    key = TestKey()
    env, clock = setup_env(alerts_env, tmp_path, key)
    schema = env["MUSTER_DB_SCHEMA"]
    people = [member(lat=FAR, language="en") for _ in range(3)]
    start = datetime.now(UTC).replace(microsecond=0)
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), people)
    # the first process stops between the provider's answer and recording the call
    first = start_service("alerts", {**env, "ALERTS_FAULT_PAUSE_AFTER_CALL_S": "60"}, tmp_path)
    second: ServiceProcess | None = None
    try:
        await wait_indexed(redis_client, topics.prefix, people)
        coordinator = bearer(key.token("coordinator", ["AL"], subject="coord-al"))
        set_clock(clock, start)
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
            got = await client.post(
                "/drills",
                json={"sections": ["AL"], "call_unanswered_after_min": 1},
                headers=coordinator,
            )
            assert got.status_code == 201, got.text
        await eventually(
            lambda: asyncio.sleep(0, [len(drill_sms(twilio, p)) for p in people]),
            lambda counts: counts == [1] * len(people),
            "drill SMS sent",
        )
        set_clock(clock, start + timedelta(minutes=2))
        await eventually(
            lambda: asyncio.sleep(0, [len(drill_calls_to(twilio, p.phone)) for p in people]),
            lambda counts: counts == [1] * len(people),
            "drill calls placed",
        )
        first.kill()
        async with admin_engine.connect() as conn:
            statuses = (
                (await conn.execute(text(f'SELECT status FROM "{schema}".drill_calls')))
                .scalars()
                .all()
            )
        assert statuses == ["placing"] * len(people)

        second = start_service("alerts", env, tmp_path)
        twilio.route(PUBLIC_BASE, second.url)
        await asyncio.sleep(QUIET_PERIOD_S * 2)
        assert [len(drill_calls_to(twilio, p.phone)) for p in people] == [1] * len(people)
        # the call itself still works: picked up now, its TwiML marks it placed
        call = drill_calls_to(twilio, people[0].phone)[0]
        menu = await twilio.pick_up(call)
        assert "Press 1 if you received this" in spoken(menu)
        async with admin_engine.connect() as conn:
            placed = (
                await conn.execute(
                    text(
                        f'SELECT status, provider_sid FROM "{schema}".drill_calls '
                        "WHERE provider_sid IS NOT NULL"
                    )
                )
            ).all()
        assert [tuple(p) for p in placed] == [("placed", call.sid)]
    finally:
        first.stop()
        if second is not None:
            second.stop()
