"""The whole platform end to end: members, alerts and dispatch as real processes on the
real local Kafka / PostgreSQL / Redis, talking to each other only through this test's
topics (one prefix for all three), each in a PostgreSQL schema of its own, with SMS going
to the local Twilio-compatible server of the alerts tests.

Admin sets up sections and staff; a coordinator registers members; the alerts service
indexes their snapshots; the coordinator declares an emergency in dispatch; exactly the
eligible members get one SMS each, in their language, with an answer link; they answer
by SMS (signed webhook) and on the web page; the board, the authority summary, the quota
("not needed"), the close (stand-down) and the closed answer page all follow.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from twilio.request_validator import RequestValidator

from tests.alerts.fake_twilio import AUTH_TOKEN, FakeTwilio, Sms
from tests.conftest import Topics
from tests.support.infra import Infra
from tests.support.processes import ServiceProcess, free_port, run_migrations, start_service

ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "e2e admin password, long enough"
COORDINATOR_EMAIL = "coordinator.al@example.org"
AUTHORITY_EMAIL = "authority.al@example.org"
STAFF_PASSWORD = "e2e staff password, long enough"

SECTION = "AL"
ASSISTING = "IT"
TIMEZONE = "Europe/Tirane"
CENTRE = (40.7239, 19.5561)  # Fier, Albania
RADIUS_M = 3000
TITLE = "Flooding, Fier centre"
WAIT_S = 30.0

#: a fragment of the first SMS in each language (the reply instructions)
ALERT_WORDS = {
    "sq": "Pergjigju PO",
    "en": "Reply YES",
    "fr": "Repondez OUI",
    "it": "Rispondi SI",
}
NOT_NEEDED_WORDS = {"sq": "nuk nevojitet me", "en": "no longer needed", "it": "non serve piu"}
STAND_DOWN_WORDS = {"sq": "nderhyrja mbaroi", "en": "stand down", "fr": "fin de l'intervention"}

T = TypeVar("T")


# --- the platform under test ----------------------------------------------------------


@dataclass
class Platform:
    members: ServiceProcess
    alerts: ServiceProcess
    dispatch: ServiceProcess
    twilio: FakeTwilio
    public_base: str
    alerts_redis_prefix: str

    def logs(self, *names: str, tail: int = 4000) -> str:
        chosen = [getattr(self, n) for n in names] or [self.members, self.alerts, self.dispatch]
        return "\n".join(
            f"----- {s.name} log (last {tail} chars) -----\n{s.log()[-tail:]}" for s in chosen
        )

    def sms_summary(self) -> str:
        return "\n".join(f"  {m.to}: {m.body!r}" for m in list(self.twilio.messages))

    def fail(self, message: str, *names: str) -> AssertionError:
        return AssertionError(
            f"{message}\nSMS seen by the Twilio server:\n{self.sms_summary()}\n{self.logs(*names)}"
        )

    def check(self, condition: bool, message: str, *names: str) -> None:
        if not condition:
            raise self.fail(message, *names)

    async def eventually(
        self,
        probe: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        what: str,
        *names: str,
        timeout_s: float = WAIT_S,
    ) -> T:
        """Poll `probe` until `done` holds (bounded); fail with the last value and logs."""
        deadline = time.monotonic() + timeout_s
        while True:
            last = await probe()
            if done(last):
                return last
            if time.monotonic() > deadline:
                message = f"{what}: not so after {timeout_s:.0f} s; last seen: {last!r}"
                raise self.fail(message, *names)
            await asyncio.sleep(0.2)


async def _create_schemas(engine: AsyncEngine, names: Sequence[str]) -> None:
    async with engine.begin() as conn:
        for name in names:
            await conn.execute(text(f'CREATE SCHEMA "{name}"'))


async def _drop_schemas(engine: AsyncEngine, names: Sequence[str]) -> None:
    async with engine.begin() as conn:
        for name in names:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


@pytest.fixture
def dispatch_env() -> dict[str, str]:
    """Dispatch settings a test module needs besides the platform's (override it)."""
    return {}


@pytest.fixture
async def platform(
    request: pytest.FixtureRequest,
    infra: Infra,
    topics: Topics,
    admin_engine: AsyncEngine,
    redis_client: redis.Redis,
    tmp_path: Path,
    dispatch_env: dict[str, str],
) -> AsyncIterator[Platform]:
    run = uuid.uuid4().hex[:8]
    schemas = {name: f"e2e_{name}_{run}" for name in ("members", "alerts", "dispatch")}
    redis_prefixes = {name: f"{topics.prefix}{name}." for name in schemas}
    base = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "DATABASE_URL": infra.database_url,
        "REDIS_URL": infra.redis_url,
        "MUSTER_TOPIC_PREFIX": topics.prefix,  # the same topics for all three
        "MUSTER_LOG_LEVEL": "INFO",
        "MUSTER_OUTBOX_POLL_INTERVAL_S": "0.05",
    }
    envs = {
        name: {
            **base,
            "MUSTER_DB_SCHEMA": schemas[name],
            "MUSTER_GROUP_ID": f"e2e-{run}-{name}",
            "MUSTER_REDIS_PREFIX": redis_prefixes[name],
        }
        for name in schemas
    }
    members_port, alerts_port = free_port(), free_port()
    jwks_url = f"http://127.0.0.1:{members_port}/.well-known/jwks.json"
    public_base = f"http://127.0.0.1:{alerts_port}"
    twilio = FakeTwilio().start()
    envs["members"] |= {
        "MUSTER_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "MUSTER_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    envs["alerts"] |= {
        **twilio.env(),  # MUSTER_SMS_PROVIDER=twilio, TWILIO_API_BASE=the local server
        "MUSTER_PUBLIC_BASE_URL": public_base,
        "MUSTER_JWKS_URL": jwks_url,
        # alerts settings a test module needs besides these (its ALERTS_ENV)
        **getattr(request.module, "ALERTS_ENV", {}),
    }
    envs["dispatch"] |= {
        "MUSTER_JWKS_URL": jwks_url,
        # no second wave during the test: it would reach members outside the radius
        "DISPATCH_ESCALATION_DELAY_S": "3600",
        "DISPATCH_ESCALATION_DELAY_EXTREME_S": "3600",
        "DISPATCH_SUMMARY_MIN_INTERVAL_S": "0.3",
        "DISPATCH_SCHEDULER_POLL_S": "0.2",
        **dispatch_env,
    }
    started: list[ServiceProcess] = []
    await _create_schemas(admin_engine, list(schemas.values()))
    try:
        await asyncio.gather(
            *(asyncio.to_thread(run_migrations, name, env) for name, env in envs.items())
        )
        members = await asyncio.to_thread(
            start_service, "members", envs["members"], tmp_path, port=members_port
        )
        started.append(members)
        outcomes = await asyncio.gather(
            asyncio.to_thread(start_service, "alerts", envs["alerts"], tmp_path, port=alerts_port),
            asyncio.to_thread(start_service, "dispatch", envs["dispatch"], tmp_path),
            return_exceptions=True,
        )
        started.extend(o for o in outcomes if isinstance(o, ServiceProcess))
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        alerts, dispatch = outcomes
        assert isinstance(alerts, ServiceProcess) and isinstance(dispatch, ServiceProcess)
        yield Platform(members, alerts, dispatch, twilio, public_base, redis_prefixes["alerts"])
    finally:
        for service in reversed(started):
            await asyncio.to_thread(service.stop, 20)
        twilio.stop()
        await _drop_schemas(admin_engine, list(schemas.values()))
        for prefix in redis_prefixes.values():
            keys = [k async for k in redis_client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await redis_client.delete(*keys)


# --- the cast -------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """A member of the test: who, where, and whether the rules admit them."""

    key: str
    full_name: str
    language: str
    north_m: float
    eligible: bool
    section: str = SECTION
    overrides: dict[str, Any] = field(default_factory=dict)


def _quiet_now() -> dict[str, str]:
    """Quiet hours from an hour ago to an hour from now, in the section's time zone."""
    local = datetime.now(ZoneInfo(TIMEZONE))
    start, end = local - timedelta(hours=1), local + timedelta(hours=1)
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}


CAST = [
    # eligible: inside the circle, FIRST_AID valid, active, consenting, available
    Person("sms_yes", "Arta Hoxha", "sq", 200, True),
    Person("web_yes", "John Whitfield", "en", 400, True),
    Person("declines", "Camille Durand", "fr", 600, True),
    Person("delivered", "Besnik Krasniqi", "sq", 800, True),
    Person("assisting", "Giulia Ferraro", "it", 1000, True, section=ASSISTING),
    # not eligible, one rule each
    Person(
        "expired",
        "Dritan Leka",
        "sq",
        300,
        False,
        overrides={"qualifications": [{"code": "FIRST_AID", "expires_at": "2020-01-01"}]},
    ),
    Person("suspended", "Elira Gjoka", "sq", 350, False, overrides={"status": "suspended"}),
    Person(
        "no_consent", "Fatos Berisha", "sq", 450, False, overrides={"consent": {"alerts": False}}
    ),
    Person("outside", "Gentiana Dema", "sq", 9000, False),
    Person("quiet", "Ilir Shehu", "sq", 500, False, overrides={"quiet_hours": "now"}),
]


def member_body(person: Person, phone: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "section": person.section,
        "full_name": person.full_name,
        "phone": phone,
        "email": f"{person.key.replace('_', '.')}@example.org",
        "language": person.language,
        "qualifications": [{"code": "FIRST_AID", "expires_at": "2030-05-01"}],
        "location": {"lat": CENTRE[0] + person.north_m / 111_195.0, "lon": CENTRE[1]},
        "availability": "available",
        "consent": {"alerts": True},
    }
    body.update(person.overrides)
    if body.get("quiet_hours") == "now":
        body["quiet_hours"] = _quiet_now()
    return body


@dataclass(frozen=True)
class Registered:
    person: Person
    id: str
    phone: str
    version: int


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, email: str, password: str) -> str:
    response = await client.post("/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, f"login of {email}: {response.status_code} {response.text}"
    return str(response.json()["access_token"])


def link_token(platform: Platform, sms: Sms) -> str:
    found = re.search(re.escape(platform.public_base) + r"/r/([A-Za-z0-9_-]+)", sms.body)
    if not found:
        raise platform.fail(f"no {platform.public_base}/r/<token> link in {sms.body!r}", "alerts")
    return found.group(1)


def signed(platform: Platform, path: str, params: dict[str, str]) -> dict[str, str]:
    """The X-Twilio-Signature Twilio would send for this webhook (auth token + public URL)."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(platform.public_base + path, params)
    return {"X-Twilio-Signature": signature}


def twiml_message(response: httpx.Response) -> str:
    found = re.search(r"<Message>(.*)</Message>", response.text, re.S)
    return found.group(1) if found else ""


# --- the flow -------------------------------------------------------------------------


async def test_declare_alert_answer_board_quota_close(
    platform: Platform, redis_client: redis.Redis
) -> None:
    p = platform
    twilio = p.twilio
    members_http = httpx.AsyncClient(base_url=p.members.url, timeout=30)
    alerts_http = httpx.AsyncClient(base_url=p.alerts.url, timeout=30)
    dispatch_http = httpx.AsyncClient(base_url=p.dispatch.url, timeout=30)
    try:
        # 1. admin: sections, staff accounts; everyone logs in -------------------------
        admin = bearer(await login(members_http, ADMIN_EMAIL, ADMIN_PASSWORD))
        sections = [
            {"code": SECTION, "name": "Section Albania", "country": "AL", "timezone": TIMEZONE,
             "language": "sq"},
            {"code": ASSISTING, "name": "Sezione Italia", "country": "IT",
             "timezone": "Europe/Rome", "language": "it"},
        ]  # fmt: skip
        for section in sections:
            created = await members_http.post("/sections", json=section, headers=admin)
            p.check(created.status_code == 201, f"POST /sections: {created.text}", "members")
        for email, role in ((COORDINATOR_EMAIL, "coordinator"), (AUTHORITY_EMAIL, "authority")):
            account = {"email": email, "password": STAFF_PASSWORD, "role": role,
                       "sections": [SECTION]}  # fmt: skip
            created = await members_http.post("/accounts", json=account, headers=admin)
            p.check(created.status_code == 201, f"POST /accounts {role}: {created.text}", "members")
        coordinator = bearer(await login(members_http, COORDINATOR_EMAIL, STAFF_PASSWORD))
        authority = bearer(await login(members_http, AUTHORITY_EMAIL, STAFF_PASSWORD))
        # the assisting section has agreed to help AL (else AL's coordinator may not call
        # out its members)
        agreement = {"section": SECTION, "assisting_section": ASSISTING}
        agreed = await dispatch_http.post("/assistance-agreements", json=agreement, headers=admin)
        p.check(
            agreed.status_code == 201, f"POST /assistance-agreements: {agreed.text}", "dispatch"
        )

        # 2. members: the coordinator registers AL's, the admin the assisting section's --
        phone_base = uuid.uuid4().int % 9_000_000
        people: dict[str, Registered] = {}
        for i, person in enumerate(CAST):
            phone = f"+35569{phone_base + i:07d}"
            staff = coordinator if person.section == SECTION else admin
            created = await members_http.post(
                "/members", json=member_body(person, phone), headers=staff
            )
            p.check(
                created.status_code == 201,
                f"POST /members ({person.key}): {created.status_code} {created.text}",
                "members",
            )
            out = created.json()
            people[person.key] = Registered(person, out["id"], out["phone"], int(out["version"]))
        eligible = [r for r in people.values() if r.person.eligible]
        ineligible = [r for r in people.values() if not r.person.eligible]

        # 3. the alerts service has indexed every member's latest snapshot ---------------
        async def indexed_versions() -> dict[str, int | None]:
            pipe = redis_client.pipeline(transaction=False)
            for r in people.values():
                pipe.hget(f"{p.alerts_redis_prefix}alerts:member:{r.id}", "v")
            found = await pipe.execute()
            return {
                r.person.key: (int(v) if v is not None else None)
                for r, v in zip(people.values(), found, strict=True)
            }

        await p.eventually(
            indexed_versions,
            lambda seen: all((seen[k] or 0) >= people[k].version for k in people),
            "the alerts index holds every member at its version "
            f"(expected { ({k: r.version for k, r in people.items()}) })",
            "members",
            "alerts",
        )

        # 4. the coordinator declares; exactly the eligible members get one SMS each ----
        declared = await dispatch_http.post(
            "/emergencies",
            headers=coordinator,
            json={
                "section": SECTION,
                "title": TITLE,
                "description": "River over its banks near the centre",
                "category": "Rescue",
                "severity": "Severe",
                "urgency": "Immediate",
                "drill": False,
                "area": {"lat": CENTRE[0], "lon": CENTRE[1], "radius_m": RADIUS_M},
                "required_qualifications": ["FIRST_AID"],
                "members_needed": 2,
                "assisting_sections": [ASSISTING],
            },
        )
        p.check(
            declared.status_code == 201,
            f"POST /emergencies: {declared.status_code} {declared.text}",
            "dispatch",
        )
        emergency = declared.json()
        emergency_id = emergency["id"]
        p.check(emergency["status"] == "active", f"declared emergency: {emergency}", "dispatch")

        def alerted() -> dict[str, list[Sms]]:
            return {r.person.key: twilio.to(r.phone) for r in people.values()}

        async def probe_sms() -> dict[str, int]:
            return {k: len(v) for k, v in alerted().items()}

        await p.eventually(
            probe_sms,
            lambda seen: all(seen[r.person.key] >= 1 for r in eligible),
            "every eligible member received the alert SMS",
            "dispatch",
            "alerts",
        )
        tokens: dict[str, str] = {}
        for r in eligible:
            got = twilio.to(r.phone)
            p.check(len(got) == 1, f"{r.person.key} got {len(got)} SMS, not 1", "alerts")
            body = got[0].body
            words = ALERT_WORDS[r.person.language]
            p.check(
                words in body,
                f"{r.person.key}'s alert is not in {r.person.language} ({words!r}): {body!r}",
                "alerts",
            )
            p.check(TITLE.split(",")[0] in body, f"no title in {body!r}", "alerts")
            tokens[r.person.key] = link_token(p, got[0])
        p.check(len(set(tokens.values())) == len(tokens), f"tokens not distinct: {tokens}")
        for r in ineligible:
            p.check(
                not twilio.to(r.phone),
                f"{r.person.key} must not be alerted: {twilio.to(r.phone)}",
                "alerts",
            )

        # the board lists exactly the alerted members
        async def board() -> dict[str, Any]:
            response = await dispatch_http.get(
                f"/emergencies/{emergency_id}/board", headers=coordinator
            )
            if response.status_code != 200:
                raise p.fail(f"GET board: {response.status_code} {response.text}", "dispatch")
            data: dict[str, Any] = response.json()
            return data

        by_id = {r.id: r.person.key for r in people.values()}

        def rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
            return {by_id.get(row["member_id"], row["member_id"]): row for row in data["rows"]}

        def statuses(data: dict[str, Any]) -> dict[str, str]:
            return {k: row["status"] for k, row in rows(data).items()}

        first = await p.eventually(
            board,
            lambda b: set(statuses(b)) == {r.person.key for r in eligible},
            "the board has one row per alerted member",
            "dispatch",
        )
        for key, row in rows(first).items():
            p.check(row["status"] in ("notified", "delivered"), f"{key}: {row}", "dispatch")
            p.check(
                row["distance_m"] is not None and row["distance_m"] <= RADIUS_M,
                f"{key} distance: {row}",
                "dispatch",
            )

        # 5. answers -----------------------------------------------------------------
        # a delivery receipt for one member (Twilio's StatusCallback, signed)
        receipt_sms = twilio.to(people["delivered"].phone)[0]
        p.check(
            receipt_sms.status_callback == f"{p.public_base}/sms/status",
            f"StatusCallback: {receipt_sms.status_callback!r}",
            "alerts",
        )
        receipt = {"MessageSid": receipt_sms.sid, "MessageStatus": "delivered",
                   "To": receipt_sms.to, "AccountSid": "AC" + "0" * 32}  # fmt: skip
        response = await alerts_http.post(
            "/sms/status", data=receipt, headers=signed(p, "/sms/status", receipt)
        )
        p.check(response.status_code in (200, 204), f"/sms/status: {response.text}", "alerts")

        async def sms_reply(who: Registered, body: str) -> str:
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
            p.check(
                answered.status_code == 200,
                f"/sms/inbound {body!r}: {answered.status_code} {answered.text}",
                "alerts",
            )
            return twiml_message(answered)

        # an unsigned webhook changes nothing
        forged = {"From": people["declines"].phone, "Body": "YES 5"}
        refused = await alerts_http.post(
            "/sms/inbound", data=forged, headers={"X-Twilio-Signature": "Zm9yZ2Vk"}
        )
        p.check(refused.status_code == 403, f"forged webhook: {refused.status_code}", "alerts")

        declined_reply = await sms_reply(people["declines"], "NON")
        p.check("Merci" in declined_reply, f"reply to NON: {declined_reply!r}", "alerts")

        middle = await p.eventually(
            board,
            lambda b: (
                statuses(b).get("declines") == "declined"
                and statuses(b).get("delivered") == "delivered"
            ),
            "the board shows the decline and the delivery",
            "dispatch",
            "alerts",
        )
        for key in ("sms_yes", "web_yes", "assisting"):
            p.check(
                statuses(middle)[key] in ("notified", "delivered"),
                f"{key} before answering: {rows(middle)[key]}",
                "dispatch",
            )
        p.check(not middle["staffed"], f"staffed too early: {middle}", "dispatch")

        accepted_reply = await sms_reply(people["sms_yes"], "YES 10")
        p.check(
            "10 min" in accepted_reply and "Faleminderit" in accepted_reply,
            f"reply to YES 10 (in sq, with the ETA): {accepted_reply!r}",
            "alerts",
        )

        page = await alerts_http.get(f"/r/{tokens['web_yes']}")
        p.check(page.status_code == 200, f"GET /r: {page.status_code} {page.text}", "alerts")
        p.check('lang="en"' in page.text and TITLE in page.text, f"answer page: {page.text}")
        answered = await alerts_http.post(f"/r/{tokens['web_yes']}", data={"choice": "15"})
        p.check(
            answered.status_code == 200,
            f"POST /r (coming in 15): {answered.status_code} {answered.text}",
            "alerts",
        )

        # 6. the board, the quota, the authority's view ----------------------------------
        def settled(b: dict[str, Any]) -> bool:
            s = statuses(b)
            return (
                s.get("sms_yes") == "accepted"
                and s.get("web_yes") == "accepted"
                and s.get("declines") == "declined"
                and s.get("delivered") == "stood_down"
                and s.get("assisting") == "stood_down"
            )

        final = await p.eventually(
            board,
            settled,
            "board: accepted, accepted, declined; the unanswered stood down (not needed)",
            "dispatch",
            "alerts",
        )
        final_rows = rows(final)
        p.check(final["staffed"] is True, f"quota met but not staffed: {final}", "dispatch")
        p.check(final_rows["sms_yes"]["eta_minutes"] == 10, f"{final_rows['sms_yes']}", "dispatch")
        p.check(final_rows["web_yes"]["eta_minutes"] == 15, f"{final_rows['web_yes']}", "dispatch")
        p.check(final_rows["declines"]["eta_minutes"] is None, f"{final_rows['declines']}")

        # the quota being met, the unanswered get "not needed"; those who answered do not
        await p.eventually(
            probe_sms,
            lambda seen: seen["delivered"] >= 2 and seen["assisting"] >= 2,
            "the unanswered members got a 'not needed' SMS",
            "alerts",
            "dispatch",
        )
        for key in ("delivered", "assisting"):
            who = people[key]
            got = twilio.to(who.phone)
            p.check(len(got) == 2, f"{key}: {len(got)} SMS", "alerts")
            words = NOT_NEEDED_WORDS[who.person.language]
            p.check(words in got[1].body, f"{key}'s not-needed SMS: {got[1].body!r}", "alerts")
        for key in ("sms_yes", "web_yes", "declines"):
            got = twilio.to(people[key].phone)
            p.check(len(got) == 1, f"{key} answered, must get nothing more: {got}", "alerts")

        # the authority: counts only, no board
        summary_response = await dispatch_http.get(
            f"/emergencies/{emergency_id}/summary", headers=authority
        )
        p.check(
            summary_response.status_code == 200,
            f"summary as authority: {summary_response.status_code} {summary_response.text}",
            "dispatch",
        )
        summary = summary_response.json()
        p.check(summary["needed"] == 2, f"summary: {summary}", "dispatch")
        counts = summary["counts"]
        p.check(
            counts.get("accepted") == 2 and counts.get("declined") == 1,
            f"summary counts: {summary}",
            "dispatch",
        )
        bands = summary.get("eta_bands", {})
        p.check(
            bands.get("0-10") == 1 and bands.get("11-20") == 1,
            f"summary ETA bands (10 and 15 min): {summary}",
            "dispatch",
        )
        raw = summary_response.text
        for r in people.values():
            national = r.phone.removeprefix("+355")
            for secret in (r.id, r.person.full_name, r.phone, national, r.id.replace("-", "")):
                p.check(secret not in raw, f"the summary leaks {secret!r}: {raw}", "dispatch")
        forbidden = await dispatch_http.get(f"/emergencies/{emergency_id}/board", headers=authority)
        p.check(
            forbidden.status_code == 403,
            f"authority on the board: {forbidden.status_code} {forbidden.text}",
            "dispatch",
        )

        # 7. close: stand-down to those coming; the answer page is gone -------------------
        closed = await dispatch_http.post(
            f"/emergencies/{emergency_id}/close", headers=coordinator, json={"note": "water down"}
        )
        p.check(
            closed.status_code == 200 and closed.json()["status"] == "closed",
            f"close: {closed.status_code} {closed.text}",
            "dispatch",
        )
        await p.eventually(
            probe_sms,
            lambda seen: seen["sms_yes"] >= 2 and seen["web_yes"] >= 2,
            "the accepted members got a stand-down SMS",
            "alerts",
            "dispatch",
        )
        for key in ("sms_yes", "web_yes"):
            who = people[key]
            got = twilio.to(who.phone)
            p.check(len(got) == 2, f"{key}: {len(got)} SMS", "alerts")
            words = STAND_DOWN_WORDS[who.person.language]
            p.check(words in got[1].body, f"{key}'s stand-down SMS: {got[1].body!r}", "alerts")

        gone = await alerts_http.get(f"/r/{tokens['sms_yes']}")
        p.check(gone.status_code == 410, f"GET /r after close: {gone.status_code}", "alerts")
        late = await alerts_http.post(f"/r/{tokens['delivered']}", data={"choice": "5"})
        p.check(late.status_code == 410, f"POST /r after close: {late.status_code}", "alerts")

        after = await p.eventually(
            board,
            lambda b: (
                statuses(b).get("sms_yes") == "stood_down"
                and statuses(b).get("web_yes") == "stood_down"
            ),
            "the board shows the accepted members stood down after the close",
            "dispatch",
        )
        p.check(statuses(after)["declines"] == "declined", f"{rows(after)}", "dispatch")

        # nobody got more than they should have, and the ineligible got nothing at all
        expected = {"sms_yes": 2, "web_yes": 2, "declines": 1, "delivered": 2, "assisting": 2}
        expected |= {r.person.key: 0 for r in ineligible}
        seen = await probe_sms()
        p.check(seen == expected, f"SMS per member {seen}, expected {expected}", "alerts")
    finally:
        await members_http.aclose()
        await alerts_http.aclose()
        await dispatch_http.aclose()
