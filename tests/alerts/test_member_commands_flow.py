"""Members managing their own availability by SMS and on their personal page (issue 11),
with members and alerts as real processes on this test's topics, each in its own schema,
SMS going to the local Twilio-compatible server.

STATUS / AWAY 3 / BACK / LINK by signed SMS change what the members service returns and
whom alerts selects (an AWAY member is not alerted, after BACK they are); the personal
page link works once, refuses a form without its CSRF token and bad fields (422 naming
the field, the link still usable), and says it is no longer valid after use or expiry;
bad commands and huge bodies get help text or a 4xx, never a 500; an unknown number
learns nothing; a replayed MessageSid changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from twilio.request_validator import RequestValidator

from tests.alerts.fake_twilio import AUTH_TOKEN, FakeTwilio
from tests.alerts.members import CENTRE, EMERGENCIES, declared, publish_emergency_event
from tests.conftest import Topics
from tests.members.conftest import unique_phone
from tests.support.infra import Infra
from tests.support.processes import ServiceProcess, free_port, run_migrations, start_service

ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "self-service admin password, long enough"
SECTION = "AL"
TIMEZONE = "Europe/Tirane"
WAIT_S = 45.0

T = TypeVar("T")


@dataclass
class Stack:
    members: ServiceProcess
    alerts: ServiceProcess
    twilio: FakeTwilio
    public_base: str
    topics: Topics
    alerts_schema: str
    alerts_redis: str

    def logs(self) -> str:
        return "\n".join(
            f"----- {s.name} -----\n{s.log()[-3000:]}" for s in (self.members, self.alerts)
        )

    async def eventually(
        self,
        probe: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        what: str,
        timeout_s: float = WAIT_S,
    ) -> T:
        deadline = time.monotonic() + timeout_s
        while True:
            last = await probe()
            if done(last):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: last seen {last!r}\n{self.logs()}")
            await asyncio.sleep(0.2)


@pytest.fixture
async def stack(
    infra: Infra,
    topics: Topics,
    admin_engine: AsyncEngine,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    run = uuid.uuid4().hex[:8]
    schemas = {name: f"ss_{name}_{run}" for name in ("members", "alerts")}
    prefixes = {name: f"{topics.prefix}{name}." for name in schemas}
    base = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "DATABASE_URL": infra.database_url,
        "REDIS_URL": infra.redis_url,
        "MUSTER_TOPIC_PREFIX": topics.prefix,
        "MUSTER_LOG_LEVEL": "INFO",
    }
    envs = {
        name: {
            **base,
            "MUSTER_DB_SCHEMA": schemas[name],
            "MUSTER_GROUP_ID": f"ss-{run}-{name}",
            "MUSTER_REDIS_PREFIX": prefixes[name],
        }
        for name in schemas
    }
    members_port, alerts_port = free_port(), free_port()
    public_base = f"http://127.0.0.1:{alerts_port}"
    twilio = FakeTwilio().start()
    envs["members"] |= {
        "MUSTER_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "MUSTER_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    envs["alerts"] |= {
        **twilio.env(),
        "MUSTER_PUBLIC_BASE_URL": public_base,
        "MUSTER_JWKS_URL": f"http://127.0.0.1:{members_port}/.well-known/jwks.json",
        "ALERTS_SMS_RATE_PER_S": "2000",
    }
    started: list[ServiceProcess] = []
    async with admin_engine.begin() as conn:
        for name in schemas.values():
            await conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        await asyncio.gather(
            *(asyncio.to_thread(run_migrations, name, env) for name, env in envs.items())
        )
        members = await asyncio.to_thread(
            start_service, "members", envs["members"], tmp_path, port=members_port
        )
        started.append(members)
        alerts = await asyncio.to_thread(
            start_service, "alerts", envs["alerts"], tmp_path, port=alerts_port
        )
        started.append(alerts)
        yield Stack(
            members, alerts, twilio, public_base, topics, schemas["alerts"], prefixes["alerts"]
        )
    finally:
        for service in reversed(started):
            await asyncio.to_thread(service.stop, 20)
        twilio.stop()
        async with admin_engine.begin() as conn:
            for name in schemas.values():
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        for prefix in prefixes.values():
            keys = [k async for k in redis_client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await redis_client.delete(*keys)


def twiml_message(response: httpx.Response) -> str:
    found = re.search(r"<Message>(.*)</Message>", response.text, re.S)
    return found.group(1) if found else ""


async def test_sms_commands_and_the_personal_page(
    stack: Stack, redis_client: redis.Redis, admin_engine: AsyncEngine
) -> None:
    s = stack
    members_http = httpx.AsyncClient(base_url=s.members.url, timeout=30)
    alerts_http = httpx.AsyncClient(base_url=s.alerts.url, timeout=30)
    try:
        token = (
            await members_http.post(
                "/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
        ).json()["access_token"]
        members_http.headers["Authorization"] = f"Bearer {token}"
        section = {"code": SECTION, "name": "Fier", "country": "AL", "timezone": TIMEZONE,
                   "language": "sq"}  # fmt: skip
        assert (await members_http.post("/sections", json=section)).status_code == 201

        async def register(name: str, north_m: float) -> tuple[str, str]:
            phone = unique_phone()
            body = {
                "section": SECTION,
                "full_name": name,
                "phone": phone,
                "language": "en",
                "qualifications": [{"code": "FIRST_AID", "expires_at": "2099-05-01"}],
                "location": {"lat": CENTRE[0] + north_m / 111_195.0, "lon": CENTRE[1]},
                "availability": "available",
                "consent": {"alerts": True},
            }
            created = await members_http.post("/members", json=body)
            assert created.status_code == 201, created.text
            return str(created.json()["id"]), phone

        arta, arta_phone = await register("Arta Hoxha", 200)
        besnik, besnik_phone = await register("Besnik Krasniqi", 400)

        async def snapshot(member_id: str) -> dict[str, Any]:
            raw = await redis_client.hget(f"{s.alerts_redis}alerts:snapshots", member_id)
            return dict(json.loads(raw)) if raw else {}

        for member_id in (arta, besnik):
            await s.eventually(lambda m=member_id: snapshot(m), bool, "the member indexed")

        async def member(member_id: str) -> dict[str, Any]:
            response = await members_http.get(f"/members/{member_id}")
            assert response.status_code == 200, response.text
            return dict(response.json())

        sids: dict[str, str] = {}

        async def sms(phone: str, body: str, sid: str | None = None) -> httpx.Response:
            params = {
                "From": phone,
                "To": "+15005550006",
                "Body": body,
                "MessageSid": sid or f"SM{uuid.uuid4().hex}",
            }
            sids[body] = params["MessageSid"]
            signature = RequestValidator(AUTH_TOKEN).compute_signature(
                s.public_base + "/sms/inbound", params
            )
            return await alerts_http.post(
                "/sms/inbound", data=params, headers={"X-Twilio-Signature": signature}
            )

        async def said(phone: str, body: str, sid: str | None = None) -> str:
            response = await sms(phone, body, sid)
            assert response.status_code == 200, response.text
            return twiml_message(response)

        # STATUS: what Muster knows ---------------------------------------------------
        status = await said(arta_phone, "status")
        assert status.startswith("MUSTER: available. Quiet hours: none."), status
        assert "No qualification expires within 60 days" in status
        # an unknown number learns nothing about anyone
        stranger = await said(unique_phone(), "STATUS")
        assert "not registered" in stranger and "available" not in stranger
        # an unsigned command changes nothing
        unsigned = await alerts_http.post(
            "/sms/inbound", data={"From": arta_phone, "Body": "AWAY", "MessageSid": "SM1"}
        )
        assert unsigned.status_code == 403

        # AWAY 3: members marks the member away, alerts stops selecting them -------------
        asked_at = datetime.now(UTC)
        away = await said(arta_phone, "AWAY 3")
        expected_day = (asked_at + timedelta(days=3)).astimezone(ZoneInfo(TIMEZONE))
        assert away == (f"Marked away until {expected_day:%d/%m}. Reply BACK when available."), away
        seen = await s.eventually(
            lambda: member(arta), lambda m: m["availability"] == "unavailable", "AWAY applied"
        )
        until = datetime.fromisoformat(seen["unavailable_until"])
        assert abs(until - (asked_at + timedelta(days=3))) < timedelta(minutes=2)
        await s.eventually(
            lambda: snapshot(arta),
            lambda snap: snap.get("availability") == "unavailable",
            "the away snapshot in alerts' index",
        )
        first = declared(radius_m=3000, members_needed=1, title="Flood one")
        await publish_emergency_event(s.topics.bootstrap, s.topics(EMERGENCIES), first)
        assert await s.twilio.wait_for_async(lambda _: len(s.twilio.to(besnik_phone)) >= 1, 60)
        await asyncio.sleep(2.0)
        assert s.twilio.to(arta_phone) == [], "an AWAY member was alerted"

        # a replayed AWAY (same MessageSid) answers the same and publishes nothing again
        # (checked after BACK: a second AWAY applied would undo it)
        # BACK: available again, and alerted --------------------------------------------
        assert await said(arta_phone, "BACK") == "Marked available. Thank you."
        assert await said(arta_phone, "AWAY 3", sids["AWAY 3"]) == away
        await s.eventually(
            lambda: member(arta), lambda m: m["availability"] == "available", "BACK applied"
        )
        await s.eventually(
            lambda: snapshot(arta),
            lambda snap: snap.get("availability") == "available",
            "the available snapshot in alerts' index",
        )
        await asyncio.sleep(1.5)
        assert (await member(arta))["availability"] == "available", "the replay was applied"
        second = declared(radius_m=3000, members_needed=1, title="Flood two")
        await publish_emergency_event(s.topics.bootstrap, s.topics(EMERGENCIES), second)
        assert await s.twilio.wait_for_async(lambda _: len(s.twilio.to(arta_phone)) >= 1, 60)

        # bad commands: help text, never a guess, never a 500 -------------------------------
        assert "1 to 366 days" in await said(arta_phone, "AWAY 99999")
        assert "No such date" in await said(arta_phone, "AWAY 31/02")
        assert "Write AWAY" in await said(arta_phone, "AWAY " + "9" * 50_000)
        huge = await sms(arta_phone, "AWAY " + "x" * 2_000_000)
        assert huge.status_code == 413, huge.status_code
        version = (await member(arta))["version"]
        await asyncio.sleep(1.0)
        assert (await member(arta))["version"] == version, "a bad command changed the member"

        # LINK: the personal page, once ------------------------------------------------------
        link_text = await said(arta_phone, "LINK")
        found = re.search(re.escape(s.public_base) + r"/me/([A-Za-z0-9_-]+)", link_text)
        assert found, link_text
        page_path = f"/me/{found.group(1)}"
        async with admin_engine.connect() as conn:
            kept = (
                await conn.execute(
                    text(
                        f'SELECT answer FROM "{s.alerts_schema}".inbound_messages '
                        "WHERE outcome = 'link'"
                    )
                )
            ).scalar_one()
            hashes = (
                (
                    await conn.execute(
                        text(f'SELECT token_hash FROM "{s.alerts_schema}".member_links')
                    )
                )
                .scalars()
                .all()
            )
        assert found.group(1) not in kept and found.group(1) not in hashes
        page = await alerts_http.get(page_path)
        assert page.status_code == 200, page.text
        assert 'lang="en"' in page.text and "My availability" in page.text
        assert "Content-Security-Policy" in page.headers
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        in_ten_days = datetime.now(ZoneInfo(TIMEZONE)).date() + timedelta(days=10)
        form = {
            "csrf": csrf.group(1),
            "availability": "away",
            "away_until": in_ten_days.isoformat(),
            "quiet_start": "22:00",
            "quiet_end": "07:00",
            "language": "fr",
            "location_consent": "yes",
            "lat": "40.73000",
            "lon": "19.56000",
        }
        forged = await alerts_http.post(page_path, data={**form, "csrf": "forged"})
        assert forged.status_code == 403
        bad = await alerts_http.post(page_path, data={**form, "quiet_end": ""})
        assert bad.status_code == 422 and "quiet_end" in bad.text
        too_long = await alerts_http.post(page_path, data={**form, "lat": "1" * 10_000})
        assert too_long.status_code == 422 and "lat" in too_long.text
        saved = await alerts_http.post(page_path, data=form)
        # said in the language just chosen
        assert saved.status_code == 200 and "Enregistr" in saved.text, saved.text
        again = await alerts_http.get(page_path)
        assert again.status_code == 410 and "Text LINK" in again.text
        assert (await alerts_http.post(page_path, data=form)).status_code == 410
        seen = await s.eventually(
            lambda: member(arta), lambda m: m["language"] == "fr", "the page's changes applied"
        )
        assert seen["availability"] == "unavailable"
        assert seen["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}
        assert seen["location"]["live"]["lat"] == pytest.approx(40.73)

        # an expired link says so (and how to get another), in the member's language now
        await s.eventually(
            lambda: snapshot(arta), lambda snap: snap.get("language") == "fr", "fr indexed"
        )
        fresh = re.search(r"/me/([A-Za-z0-9_-]+)", await said(arta_phone, "LIEN"))
        assert fresh
        async with admin_engine.begin() as conn:
            await conn.execute(
                text(
                    f'UPDATE "{s.alerts_schema}".member_links '
                    "SET expires_at = now() - interval '1 second' WHERE used_at IS NULL"
                )
            )
        expired = await alerts_http.get(f"/me/{fresh.group(1)}")
        assert expired.status_code == 410 and "LIEN" in expired.text
        assert (await alerts_http.get("/me/not-a-token")).status_code == 404
    finally:
        await members_http.aclose()
        await alerts_http.aclose()
