"""The channel ladder on the dispatch board (issue 11): members, alerts and dispatch as real
processes (the platform of test_emergency_flow.py), SMS and calls through the local
Twilio-compatible server, which picks up the call, fetches alerts' TwiML and presses keys.

Two members are alerted by SMS; one answers by SMS at once and is never called; the
other does not, is phoned after the (shortened) delay, presses 1 then 15 and shows on the
board as accepted, ETA 15, by voice, the call answered.
"""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

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
    login,
    member_body,
    platform,
    signed,
)

__all__ = ["platform"]  # the fixture, imported for this module's tests

#: read by the platform fixture: the ladder's delays shortened to seconds
ALERTS_ENV = {
    "ALERTS_LADDER_DELAY_SEVERE_S": "3",
    "ALERTS_LADDER_INTERVAL_S": "0.5",
}


@pytest.fixture
def dispatch_env() -> dict[str, str]:
    return {}


CAST = [
    Person("texter", "Arta Hoxha", "sq", 200, True),
    Person("caller", "John Whitfield", "en", 300, True),
]


def gather_action(twiml: str) -> str:
    gathers = list(ET.fromstring(twiml).iter("Gather"))
    assert gathers, twiml
    return gathers[0].get("action") or ""


async def test_an_unanswered_sms_leads_to_a_call_answered_on_the_board(
    platform: Platform, redis_client: redis.Redis
) -> None:
    p = platform
    twilio = p.twilio
    # the webhooks' public base is alerts' own address here
    twilio.route(p.public_base, p.public_base)
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
        texter, caller = people["texter"], people["caller"]

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
                "section": SECTION, "title": "Flood, Fier", "category": "Met",
                "severity": "Severe", "urgency": "Immediate",
                "area": {"lat": CENTRE[0], "lon": CENTRE[1], "radius_m": 3000},
                "required_qualifications": ["FIRST_AID"], "members_needed": 4,
            },
        )  # fmt: skip
        p.check(declared.status_code == 201, f"POST /emergencies: {declared.text}", "dispatch")
        emergency_id = declared.json()["id"]

        async def texted() -> int:
            return len(twilio.messages)

        await p.eventually(texted, lambda n: n >= 2, "both alerted by SMS", "alerts")
        params = {"From": texter.phone, "To": "+15005550006", "Body": "PO 5",
                  "MessageSid": f"SM{uuid.uuid4().hex}"}  # fmt: skip
        reply = await alerts_http.post(
            "/sms/inbound", data=params, headers=signed(p, "/sms/inbound", params)
        )
        p.check(reply.status_code == 200, f"SMS reply: {reply.text}", "alerts")

        async def calls() -> int:
            return len(twilio.calls)

        await p.eventually(calls, lambda n: n >= 1, "the unanswered member called", "alerts")
        call = twilio.calls[0]
        p.check(call.to == caller.phone, f"called {call.to}, not the silent member", "alerts")
        menu = await twilio.wait_for_twiml(call)
        coming = await twilio.press(call, gather_action(menu), "1")
        done = await twilio.press(call, gather_action(coming.text), "15")
        p.check("15 minutes" in done.text, f"after 1, 15: {done.text}", "alerts")
        ended = await twilio.end(call, "completed")
        p.check(ended.status_code == 204, f"status callback: {ended.text}", "alerts")

        async def board() -> dict[str, dict[str, Any]]:
            response = await dispatch_http.get(
                f"/emergencies/{emergency_id}/board", headers=coordinator
            )
            p.check(response.status_code == 200, f"GET board: {response.text}", "dispatch")
            return {row["member_id"]: row for row in response.json()["rows"]}

        def settled(rows: dict[str, dict[str, Any]]) -> bool:
            row = rows.get(caller.id, {})
            return row.get("contact_step") == "call_answered" and row.get("eta_minutes") == 15

        rows = await p.eventually(board, settled, "the call on the board", "dispatch", "alerts")
        row = rows[caller.id]
        assert (row["status"], row["eta_minutes"], row["channel"]) == ("accepted", 15, "voice")
        other = rows[texter.id]
        assert (other["status"], other["channel"]) == ("accepted", "sms")
        assert other["contact_step"] in ("sms_sent", "sms_delivered")
        # still a single call after several more of the ladder's rounds
        await asyncio.sleep(3.0)
        assert len(twilio.calls) == 1 and len(twilio.call_requests) == 1
    finally:
        await members_http.aclose()
        await alerts_http.aclose()
        await dispatch_http.aclose()
