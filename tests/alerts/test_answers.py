"""Members answer by SMS (signed Twilio webhooks, TwiML answers) and on the web page;
delivery callbacks; staffed → not needed / standby; call-up; escalation; close and
false alarm."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.emergencies import EmergencyClosed, EmergencyEscalated, EmergencyUpdated
from shared.events.envelope import Envelope
from shared.events.topics import ALERTS, RESPONSES
from tests.alerts.answers_support import message_of, signed, sms, token_in
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


async def events_of(topics: Topics, topic: str, count: int) -> list[Envelope]:
    return await read_events(topics.bootstrap, [topics(topic)], count=count, settle_s=1.0)


async def test_sms_replies_web_answers_and_signatures(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    langs = ["en", "fr", "it", "sq", "sq", "en", "en", "en", "en", "fr"]
    people = [member(lat=CENTRE[0] + i * 0.001, language=lang) for i, lang in enumerate(langs)]
    yes15, oui, si, po, jo, no, stopper, blah, web, multi = people
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), people)
    service = start_service("alerts", alerts_env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, people)
        first = declared(radius_m=5000, members_needed=4, title="Flood")
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), first)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 10, 30)
        tokens = {m.member_id: token_in(twilio.to(m.phone or "")[0].body) for m in people}

        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            # a wrong signature: 403, nothing recorded
            params = {"From": yes15.phone or "", "Body": "YES 15"}
            bad = await client.post(
                "/sms/inbound", data=params, headers={"X-Twilio-Signature": "bm90IGl0"}
            )
            assert bad.status_code == 403
            unsigned = await client.post("/sms/inbound", data=params)
            assert unsigned.status_code == 403

            answers = {
                "YES 15": (yes15, "Thank you, you are expected in 15 min"),
                "oui 10 min": (oui, "Merci, vous etes attendu dans 10 min"),
                "Sì": (si, "Grazie, sei atteso"),
                "PO": (po, "Faleminderit, ju presim"),
                "jo": (jo, "Faleminderit per pergjigjen"),
                "no": (no, "Thank you for answering"),
                "blah": (blah, "MUSTER: reply YES +minutes"),
                "STOP": (stopper, "You will get no more Muster SMS"),
            }
            for body, (who, expected) in answers.items():
                reply = await sms(client, who.phone or "", body)
                assert reply.status_code == 200
                assert reply.headers["content-type"].startswith("application/xml")
                assert message_of(reply).startswith(expected), (body, reply.text)
            arrived = await sms(client, yes15.phone or "", "ARRIVED")
            assert message_of(arrived).startswith("Arrival noted")

            # the web page, in the member's language, without JavaScript
            page = await client.get(f"/r/{tokens[multi.member_id]}")
            assert page.status_code == 200
            assert 'lang="fr"' in page.text and "<script" not in page.text
            assert 'name="choice" value="15"' in page.text and "Je ne viens pas" in page.text
            assert (await client.get("/r/not-a-token")).status_code == 404
            bad_choice = await client.post(f"/r/{tokens[web.member_id]}", data={"choice": "7"})
            assert bad_choice.status_code == 422 and "choice" in bad_choice.text
            recorded = await client.post(f"/r/{tokens[web.member_id]}", data={"choice": "30"})
            assert recorded.status_code == 200 and "Your answer is recorded" in recorded.text

            # a delivery callback
            delivered_sid = twilio.to(no.phone or "")[0].sid
            params = {"MessageSid": delivered_sid, "MessageStatus": "delivered"}
            status = await client.post(
                "/sms/status", data=params, headers=signed("/sms/status", params)
            )
            assert status.status_code == 204
            failed_sid = twilio.to(jo.phone or "")[0].sid
            params = {
                "MessageSid": failed_sid,
                "MessageStatus": "undelivered",
                "ErrorCode": "30003",
            }
            status = await client.post(
                "/sms/status", data=params, headers=signed("/sms/status", params)
            )
            assert status.status_code == 204
            forged = await client.post("/sms/status", data={**params, "MessageSid": delivered_sid})
            assert forged.status_code == 403

            # two open alerts: a reply without the code gets a question, with it is applied
            second = declared(radius_m=5000, members_needed=4, title="Fire", severity="Extreme")
            await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), second)
            assert await twilio.wait_for_async(
                lambda ms: len(twilio.to(multi.phone or "")) >= 2, 30
            )
            await asyncio.sleep(1.0)
            assert twilio.to(stopper.phone or "") and len(twilio.to(stopper.phone or "")) == 1
            coded = twilio.to(multi.phone or "")[1].body
            code = re.search(r"OUI ([A-Z][0-9A-Z]{2})", coded)
            assert code, coded
            question = await sms(client, multi.phone or "", "oui 5")
            assert "plusieurs alertes" in message_of(question)
            assert f"{code.group(1)} Fire" in message_of(question)
            answered = await sms(client, multi.phone or "", f"OUI {code.group(1)} 5")
            assert message_of(answered).startswith("Merci, vous etes attendu dans 5 min")

        responses = await events_of(topics, RESPONSES, 9)
        got = sorted(
            (str(e.data["member_id"]), e.data["answer"], e.data["eta_minutes"], e.data["channel"])
            for e in responses
        )
        expected = sorted(
            [
                (str(yes15.member_id), "accepted", 15, "sms"),
                (str(oui.member_id), "accepted", 10, "sms"),
                (str(si.member_id), "accepted", None, "sms"),
                (str(po.member_id), "accepted", None, "sms"),
                (str(jo.member_id), "declined", None, "sms"),
                (str(no.member_id), "declined", None, "sms"),
                (str(yes15.member_id), "on_scene", None, "sms"),
                (str(web.member_id), "accepted", 30, "web"),
                (str(multi.member_id), "accepted", 5, "sms"),
            ]
        )
        assert got == expected
        multi_answer = next(e for e in responses if e.data["member_id"] == str(multi.member_id))
        assert multi_answer.data["emergency_id"] == str(second.emergency_id)
        alert_events = await events_of(topics, ALERTS, 1)
        delivered = [e for e in alert_events if e.type == "muster.alert.delivered.v1"]
        assert [e.data["member_id"] for e in delivered] == [str(no.member_id)]
        undelivered = [e for e in alert_events if e.type == "muster.alert.failed.v1"]
        assert [(e.data["member_id"], e.data["reason"]) for e in undelivered] == [
            (str(jo.member_id), "undelivered 30003")
        ]
        async with admin_engine.connect() as conn:
            kept = (
                await conn.execute(
                    text(f'SELECT outcome, body FROM "{schema}".inbound_messages ORDER BY id')
                )
            ).all()
        assert ("unknown", "blah") in [(r.outcome, r.body) for r in kept]
        assert ("ambiguous", "oui 5") in [(r.outcome, r.body) for r in kept]
        assert all(
            r.body != "YES 15" or r.outcome == "accepted" for r in kept
        )  # the 403s left nothing
        assert sum(r.body == "YES 15" for r in kept) == 1
    finally:
        service.stop()


async def test_staffed_standby_call_up_escalation_close_and_false_alarm(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    tmp_path: Path,
) -> None:
    people = [member(lat=CENTRE[0] + i * 0.002, language="en") for i in range(12)]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), people)
    service = start_service("alerts", alerts_env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, people)
        emergency = declared(radius_m=1500, members_needed=2, title="Search")  # 8 within 1.5 km
        eid = emergency.emergency_id
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), emergency)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 6, 30)
        await asyncio.sleep(0.5)
        first_wave = people[:6]
        assert sorted(s.to for s in twilio.messages) == sorted(m.phone for m in first_wave)
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            for who in first_wave[:2]:
                assert "expected" in message_of(await sms(client, who.phone or "", "YES 10"))
            now = datetime.now(UTC)
            staffed = EmergencyUpdated(
                **emergency.model_dump(exclude={"declared_at"}), staffed=True, updated_at=now
            )
            await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), staffed)
            assert await twilio.wait_for_async(
                lambda ms: sum("no longer needed" in m.body for m in ms) >= 4, 30
            )
            late = first_wave[2]
            standby = await sms(client, late.phone or "", "yes")
            assert "standby" in message_of(standby)
            call_up = EmergencyUpdated(
                **emergency.model_dump(exclude={"declared_at"}),
                staffed=True,
                call_up=[late.member_id],
                updated_at=now,
            )
            escalated = EmergencyEscalated(
                emergency_id=eid, wave=2, radius_m=3000, count=3, escalated_at=now
            )
            await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), call_up, escalated)
            assert await twilio.wait_for_async(
                lambda ms: any("needed now" in m.body for m in ms) and len({m.to for m in ms}) >= 9,
                30,
            )
            wave2 = {s.to for s in twilio.messages} - {m.phone for m in first_wave}
            assert wave2 == {m.phone for m in people[6:9]}  # the next-nearest, unalerted
            token = token_in(twilio.to(first_wave[0].phone or "")[0].body)
            closed = EmergencyClosed(emergency_id=eid, closed_at=now)
            await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), closed)
            assert await twilio.wait_for_async(
                lambda ms: sum("stand down" in m.body for m in ms) >= 3, 30
            )
            await asyncio.sleep(1.0)
            stood_down = {m.to for m in twilio.messages if "stand down" in m.body}
            assert stood_down == {m.phone for m in first_wave[:3]}
            assert (await client.get(f"/r/{token}")).status_code == 410
            assert "closed" in message_of(await sms(client, first_wave[0].phone or "", "ARRIVED"))

            # a false alarm: every alerted member gets the correction
            twilio.messages.clear()
            alarm = declared(radius_m=1000, members_needed=1, title="Gas leak")
            await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), alarm)
            assert await twilio.wait_for_async(lambda ms: len(ms) >= 3, 30)
            alerted = {m.to for m in twilio.messages}
            cancel = EmergencyClosed(
                emergency_id=alarm.emergency_id,
                reason="false_alarm",
                false_alarm=True,
                closed_at=now,
            )
            await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), cancel)
            assert await twilio.wait_for_async(
                lambda ms: sum("false alarm" in m.body for m in ms) >= len(alerted), 30
            )
            assert {m.to for m in twilio.messages if "false alarm" in m.body} == alerted
        events = await events_of(topics, ALERTS, 1)
        reasons = [e.data["reason"] for e in events if e.type == "muster.alert.stood_down.v1"]
        assert sorted(reasons) == sorted(["not_needed"] * 4 + ["closed"] * 3 + ["false_alarm"] * 3)
        responses = await events_of(topics, RESPONSES, 3)
        late_answer = [e for e in responses if e.data["member_id"] == str(late.member_id)]
        assert [e.data["standby"] for e in late_answer] == [True]
    finally:
        service.stop()
