"""The safety loop end to end on the dispatch board (issue 11): members, alerts and
dispatch as real processes on the real local Kafka / PostgreSQL / Redis (the platform of
test_emergency_flow.py), SMS through the local Twilio-compatible server.

Four members in four languages accept, go on the way and on scene by SMS or with their
page's buttons; the coordinator's roll call is confirmed by two (SMS `MIRË`, the page's
"I'm OK") and the board shows the other two missing; the coordinator releases everyone
(each is texted "reply SAFE when home"); two say they are home safe; the other two are
flagged overdue on the board and get one reminder each; one of them then says home safe.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from services.alerts import messages
from tests.alerts.fake_twilio import Sms
from tests.e2e.test_emergency_flow import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    CENTRE,
    COORDINATOR_EMAIL,
    SECTION,
    STAFF_PASSWORD,
    TIMEZONE,
    Person,
    Platform,
    Registered,
    bearer,
    link_token,
    login,
    member_body,
    platform,
    signed,
    twiml_message,
)

__all__ = ["platform"]  # the fixture, imported for this module's tests

#: released and not home safe this long after: overdue (short, for the test)
OVERDUE_AFTER_S = 12
ROLL_CALL_MISSING_AFTER_S = 3
TITLE = "Search, Fier hills"
CAST = [
    Person("arta", "Arta Hoxha", "sq", 200, True),
    Person("john", "John Whitfield", "en", 300, True),
    Person("camille", "Camille Durand", "fr", 400, True),
    Person("giulia", "Giulia Ferraro", "it", 500, True),
]


@pytest.fixture
def dispatch_env() -> dict[str, str]:
    return {
        "DISPATCH_OVERDUE_AFTER_S": str(OVERDUE_AFTER_S),
        "DISPATCH_ROLL_CALL_MISSING_AFTER_S": str(ROLL_CALL_MISSING_AFTER_S),
    }


async def test_safety_loop_on_the_board(platform: Platform, redis_client: redis.Redis) -> None:
    p = platform
    twilio = p.twilio
    members_http = httpx.AsyncClient(base_url=p.members.url, timeout=30)
    alerts_http = httpx.AsyncClient(base_url=p.alerts.url, timeout=30)
    dispatch_http = httpx.AsyncClient(base_url=p.dispatch.url, timeout=30)
    try:
        admin = bearer(await login(members_http, ADMIN_EMAIL, ADMIN_PASSWORD))
        section = {"code": SECTION, "name": "Section Albania", "country": "AL",
                   "timezone": TIMEZONE, "language": "sq"}  # fmt: skip
        created = await members_http.post("/sections", json=section, headers=admin)
        p.check(created.status_code == 201, f"POST /sections: {created.text}", "members")
        account = {"email": COORDINATOR_EMAIL, "password": STAFF_PASSWORD,
                   "role": "coordinator", "sections": [SECTION]}  # fmt: skip
        created = await members_http.post("/accounts", json=account, headers=admin)
        p.check(created.status_code == 201, f"POST /accounts: {created.text}", "members")
        coordinator = bearer(await login(members_http, COORDINATOR_EMAIL, STAFF_PASSWORD))

        phone_base = uuid.uuid4().int % 9_000_000
        people: dict[str, Registered] = {}
        for i, person in enumerate(CAST):
            phone = f"+35569{phone_base + i:07d}"
            created = await members_http.post(
                "/members", json=member_body(person, phone), headers=coordinator
            )
            p.check(created.status_code == 201, f"POST /members: {created.text}", "members")
            out = created.json()
            people[person.key] = Registered(person, out["id"], out["phone"], int(out["version"]))
        arta, john, camille, giulia = (people[k] for k in ("arta", "john", "camille", "giulia"))

        async def indexed() -> list[Any]:
            pipe = redis_client.pipeline(transaction=False)
            for r in people.values():
                pipe.hget(f"{p.alerts_redis_prefix}alerts:member:{r.id}", "v")
            return list(await pipe.execute())

        await p.eventually(indexed, lambda vs: all(v is not None for v in vs), "indexed", "alerts")

        declared = await dispatch_http.post(
            "/emergencies",
            headers=coordinator,
            json={
                "section": SECTION, "title": TITLE, "category": "Rescue",
                "severity": "Severe", "urgency": "Immediate",
                "area": {"lat": CENTRE[0], "lon": CENTRE[1], "radius_m": 3000},
                "required_qualifications": ["FIRST_AID"], "members_needed": 4,
            },
        )  # fmt: skip
        p.check(declared.status_code == 201, f"POST /emergencies: {declared.text}", "dispatch")
        emergency_id = declared.json()["id"]

        def texts(who: Registered) -> list[str]:
            return [m.body for m in twilio.to(who.phone)]

        async def all_sms() -> list[Sms]:
            return list(twilio.messages)

        await p.eventually(
            all_sms,
            lambda ms: all(texts(r) for r in people.values()),
            "everyone alerted",
            "alerts",
        )
        pages = {k: f"/r/{link_token(p, twilio.to(r.phone)[0])}" for k, r in people.items()}

        async def say(who: Registered, body: str) -> str:
            params = {
                "From": who.phone,
                "To": "+15005550006",
                "Body": body,
                "MessageSid": f"SM{uuid.uuid4().hex}",
                "AccountSid": "AC" + "0" * 32,
            }
            answered = await alerts_http.post(
                "/sms/inbound", data=params, headers=signed(p, "/sms/inbound", params)
            )
            p.check(answered.status_code == 200, f"SMS {body!r}: {answered.text}", "alerts")
            return twiml_message(answered)

        async def press(who: Registered, choice: str) -> None:
            answered = await alerts_http.post(pages[who.person.key], data={"choice": choice})
            p.check(answered.status_code == 200, f"page {choice}: {answered.text}", "alerts")

        async def board() -> dict[str, Any]:
            got = await dispatch_http.get(f"/emergencies/{emergency_id}/board", headers=coordinator)
            p.check(got.status_code == 200, f"GET board: {got.text}", "dispatch")
            data: dict[str, Any] = got.json()
            return data

        key_of = {r.id: k for k, r in people.items()}

        def statuses(data: dict[str, Any]) -> dict[str, str]:
            return {key_of[row["member_id"]]: row["status"] for row in data["rows"]}

        async def board_shows(expected: dict[str, str], what: str) -> dict[str, Any]:
            return await p.eventually(
                board,
                lambda b: all(statuses(b).get(k) == s for k, s in expected.items()),
                what,
                "dispatch",
                "alerts",
            )

        # accept, on the way, on scene: by SMS in sq, en, it; by the page in fr
        await say(arta, "PO 10")
        await say(john, "YES 5")
        await press(camille, "15")
        await say(giulia, "SI 20")
        await board_shows({k: "accepted" for k in people}, "everyone accepted")
        p.check(await say(arta, "NË RRUGË") == messages.text("sq", "en_route"), "sq en route")
        await press(camille, "en_route")
        await board_shows({"arta": "en_route", "camille": "en_route"}, "two on the way")
        p.check(await say(arta, "MBËRRITA") == messages.text("sq", "arrived"), "sq arrived")
        p.check(await say(john, "ARRIVED") == messages.text("en", "arrived"), "en arrived")
        await press(camille, "on_scene")
        p.check(await say(giulia, "ARRIVATO") == messages.text("it", "arrived"), "it arrived")
        await board_shows({k: "on_scene" for k in people}, "everyone on scene")

        # the roll call: two confirm, the board shows the other two missing
        started = await dispatch_http.post(
            f"/emergencies/{emergency_id}/roll-calls", headers=coordinator
        )
        p.check(started.status_code == 201, f"POST roll-calls: {started.text}", "dispatch")
        roll_call_texts = {
            k: messages.follow_up_sms("roll_call", language=r.person.language, title=TITLE,
                                      drill=False)
            for k, r in people.items()
        }  # fmt: skip
        await p.eventually(
            all_sms,
            lambda _: all(roll_call_texts[k] in texts(r) for k, r in people.items()),
            "everyone asked for the roll call, in their language",
            "alerts",
        )
        p.check(await say(arta, "MIRË") == messages.text("sq", "roll_call_ok"), "sq roll call OK")
        await press(camille, "roll_call_ok")
        roll = await p.eventually(
            board,
            lambda b: (
                (b.get("roll_call") or {}).get("missing") is not None
                and sorted(b["roll_call"]["confirmed"]) == sorted([arta.id, camille.id])
                and sorted(b["roll_call"]["missing"]) == sorted([john.id, giulia.id])
            ),
            "the board shows who confirmed and who is missing",
            "dispatch",
            "alerts",
            timeout_s=30 + ROLL_CALL_MISSING_AFTER_S,
        )
        p.check(not roll["roll_call"]["waiting"], f"roll call: {roll['roll_call']}", "dispatch")

        # release everyone: each is texted to reply SAFE when home
        released = await dispatch_http.post(
            f"/emergencies/{emergency_id}/release", headers=coordinator
        )
        p.check(released.status_code == 200, f"POST release: {released.text}", "dispatch")
        p.check(released.json()["released"] == 4, f"release: {released.text}", "dispatch")
        release_texts = {
            k: messages.follow_up_sms("released", language=r.person.language, title=TITLE,
                                      drill=False)
            for k, r in people.items()
        }  # fmt: skip
        await p.eventually(
            all_sms,
            lambda _: all(release_texts[k] in texts(r) for k, r in people.items()),
            "everyone told they are released",
            "alerts",
        )
        await board_shows({k: "released" for k in people}, "everyone released")

        # two home safe at once; the others flagged overdue, with one reminder each
        p.check(await say(john, "SAFE") == messages.text("en", "home_safe"), "en home safe")
        await press(camille, "home_safe")
        await board_shows({"john": "home_safe", "camille": "home_safe"}, "two home safe")
        reminders = {
            k: messages.follow_up_sms("overdue", language=people[k].person.language,
                                      title=TITLE, drill=False)
            for k in ("arta", "giulia")
        }  # fmt: skip
        flagged = await p.eventually(
            board,
            lambda b: (
                {key_of[r["member_id"]] for r in b["rows"] if r["overdue"]} == {"arta", "giulia"}
            ),
            "the board flags the two not home overdue",
            "dispatch",
            timeout_s=30 + OVERDUE_AFTER_S,
        )
        p.check(
            statuses(flagged)["arta"] == "released" and statuses(flagged)["giulia"] == "released",
            f"overdue rows: {flagged['rows']}",
            "dispatch",
        )
        await p.eventually(
            all_sms,
            lambda _: all(reminders[k] in texts(people[k]) for k in reminders),
            "one reminder to each overdue member",
            "alerts",
        )
        p.check(await say(arta, "NË SHTËPI") == messages.text("sq", "home_safe"), "sq home")
        after = await board_shows({"arta": "home_safe", "giulia": "released"}, "arta home")
        await asyncio.sleep(2.0)
        for k, r in people.items():
            sent = texts(r)
            p.check(sent.count(roll_call_texts[k]) == 1, f"{k}: roll call texts {sent}", "alerts")
            p.check(sent.count(release_texts[k]) == 1, f"{k}: release texts {sent}", "alerts")
            expected_reminders = 1 if k in reminders else 0
            p.check(
                sum(b == reminders.get(k) for b in sent) == expected_reminders,
                f"{k}: reminders {sent}",
                "alerts",
            )
        p.check(
            {key_of[r["member_id"]] for r in after["rows"] if r["overdue"]} == {"giulia"},
            f"overdue after arta's SAFE: {after['rows']}",
            "dispatch",
        )
    finally:
        await members_http.aclose()
        await alerts_http.aclose()
        await dispatch_http.aclose()
