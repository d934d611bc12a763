"""Reachability drills end to end (issue 12): alerts as real processes over real Kafka,
PostgreSQL and Redis, SMS through the local Twilio-compatible server, and the drills'
clock moved by the test (ALERTS_DRILL_CLOCK_OFFSET_FILE) instead of waiting.

- A drill scheduled for a section of 200 members goes out at its time, not before, in
  each member's language; members in quiet hours get it when their quiet hours end;
  members on an active emergency are skipped; OKs by SMS and by the link are counted,
  and the 5/15/60-minute results are those of the answers the test sent, by section and
  by qualification. The drill creates no alert and no emergency. Members whose SMS
  failed or who never answered are listed for the coordinator. The readiness figure is
  what the test data implies; the authorities' bytes hold no member id or number, and
  small counts are "< k".
- A monthly drill with two alerts processes fires at its first date and again at its
  next, each member getting exactly one SMS per occurrence.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import httpx
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts import messages
from shared.events.members import MemberChanged
from tests.alerts.answers_support import message_of, signed, sms
from tests.alerts.conftest import PUBLIC_BASE
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
from tests.support.processes import ServiceProcess, start_service
from tests.support.tokens import TestKey, bearer

T = TypeVar("T")
TIRANA = ZoneInfo("Europe/Tirane")
LANGUAGES = ("en", "fr", "it", "sq")
FAR = CENTRE[0] + 0.5  # about 55 km north: outside the emergency's circle


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str, timeout_s: float = 90
) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        last = await probe()
        if done(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: last seen {last!r}")
        await asyncio.sleep(0.2)


def set_clock(path: Path, at: datetime) -> None:
    """Make the drills' clock read `at` now (it runs on from there). Written aside and
    renamed: the alerts process reads the file at any moment, never half-written."""
    fresh = path.with_suffix(".new")
    fresh.write_text(str((at - datetime.now(UTC)).total_seconds()))
    fresh.replace(path)


def drill_sms(twilio: FakeTwilio, person: MemberChanged) -> list[str]:
    return [m.body for m in twilio.to(person.phone or "") if "MUSTER TEST" in m.body]


def token_of(body: str) -> str:
    found = re.search(r"/d/([A-Za-z0-9_-]+)$", body)
    assert found, body
    return found.group(1)


def setup_env(
    alerts_env: dict[str, str], tmp_path: Path, key: TestKey
) -> tuple[dict[str, str], Path]:
    clock = tmp_path / "drill-clock"
    clock.write_text("0")
    env = {
        **alerts_env,
        "MUSTER_JWKS_URL": key.write_jwks(tmp_path / "jwks.json"),
        "ALERTS_DRILL_CLOCK_OFFSET_FILE": str(clock),
        "ALERTS_DRILL_CHECK_INTERVAL_S": "0.5",
        "ALERTS_READINESS_INTERVAL_S": "3600",
        "MUSTER_AVAILABILITY_MIN_COUNT": "5",
    }
    return env, clock


async def test_a_scheduled_drill_on_a_section_of_200_members(
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
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    local = at.astimezone(TIRANA)
    today = date.today()

    def person(i: int, **kw: object) -> MemberChanged:
        quals: list[tuple[str, date | None]] = [("FIRST_AID", date(2030, 1, 1))]
        if i < 30:  # expire before 30 days are out, still valid today
            quals = [("FIRST_AID", today + timedelta(days=20))]
        elif i < 50:  # still valid in 30 days, not in 60
            quals = [("FIRST_AID", today + timedelta(days=45))]
        if i % 50 == 7:  # four SAR holders: a count authorities see as "< 5"
            quals.append(("SAR", None))
        values: dict[str, object] = {
            "lat": FAR,
            "language": LANGUAGES[i % 4],
            "qualifications": quals,
        }
        return member(**(values | kw))  # type: ignore[arg-type]

    busy = [person(i, lat=CENTRE[0]) for i in range(10)]
    quiet = (
        (local - timedelta(minutes=30)).time().replace(second=0),
        (local + timedelta(minutes=60)).time().replace(second=0),
    )
    held = [person(i, quiet=quiet) for i in range(10, 30)]
    rejected = [person(i) for i in range(30, 35)]
    normal = [person(i) for i in range(35, 200)]
    not_asked = [member(section="IT", lat=FAR), member(status="suspended", lat=FAR)]
    section = [*busy, *held, *rejected, *normal]
    assert len(section) == 200
    for p in rejected:
        twilio.reject(p.phone or "", 400)
    # who answers how and when (minutes after the drill's time), the rest never
    by_sms_3, by_link_10, by_sms_40, by_link_90 = (
        normal[:40], normal[40:70], normal[70:95], normal[95:115],
    )  # fmt: skip
    never = normal[115:]
    held_by_sms, held_never = held[:10], held[10:]

    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [*section, *not_asked])
    service = start_service("alerts", env, tmp_path)
    coordinator = bearer(key.token("coordinator", ["AL"], subject="coord-al"))
    authority = bearer(key.token("authority", ["AL"], subject="auth-al"))
    try:
        await wait_indexed(redis_client, topics.prefix, [*section, *not_asked])
        # the ten nearest are out on an emergency (alerted, not answered yet)
        emergency = declared(members_needed=10, radius_m=3000)
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), emergency)
        assert await twilio.wait_for_async(
            lambda _: all(twilio.to(p.phone or "") for p in busy), 60
        ), service.log()[-3000:]

        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            # who may schedule, and bad input naming the field
            body = {"sections": ["AL"], "starts_at": at.isoformat()}
            for headers, expected in ((authority, 403), ({}, 401)):
                got = await client.post("/drills", json=body, headers=headers)
                assert got.status_code == expected, got.text
            other = bearer(key.token("coordinator", ["IT"], subject="coord-it"))
            assert (await client.post("/drills", json=body, headers=other)).status_code == 403
            for field, value in (
                ("recurrence", "FREQ=MINUTELY"),
                ("recurrence", "nonsense"),
                ("timezone", "Mars/Olympus"),
                ("timezone", "Europe"),  # a folder of the zone database, no zone
                ("starts_at", "9999-12-31T23:59:00+00:00"),
                ("recurrence", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"),
                ("starts_at", "2026-12-05T10:00:00"),
                ("sections", []),
            ):
                got = await client.post("/drills", json={**body, field: value}, headers=coordinator)
                assert got.status_code == 422, (field, got.text)
                assert field in got.json()["detail"][0]["loc"], got.text

            got = await client.post("/drills", json=body, headers=coordinator)
            assert got.status_code == 201, got.text
            drill_id = got.json()["id"]
            assert datetime.fromisoformat(got.json()["next_at"]) == at

            # not before its time
            await asyncio.sleep(2)
            assert not any(drill_sms(twilio, p) for p in section)

            # its time: everyone asked but the busy and the held, in their language
            set_clock(clock, at + timedelta(seconds=1))
            await eventually(
                lambda: asyncio.sleep(0, sum(1 for p in normal if drill_sms(twilio, p))),
                lambda n: n == len(normal),
                "drill SMS sent",
            )
            await eventually(
                lambda: asyncio.sleep(
                    0, sum(1 for p in rejected if twilio.attempts(p.phone or ""))
                ),
                lambda n: n == len(rejected),
                "drill SMS refused",
            )
            tokens: dict[uuid.UUID, str] = {}
            for p in normal:
                (only,) = drill_sms(twilio, p)
                tokens[p.member_id] = token_of(only)
                link = f"{PUBLIC_BASE}/d/{tokens[p.member_id]}"
                assert only == messages.text(p.language, "drill_test", link=link)
            assert not any(drill_sms(twilio, p) for p in [*busy, *held, *not_asked])

            # OK by SMS 3 minutes on; the reply thanks in the member's language
            set_clock(clock, at + timedelta(minutes=3))
            for p in by_sms_3:
                answered = await sms(client, p.phone or "", "OK")
                assert message_of(answered) == messages.text(p.language, "drill_ok")
            # by the link 10 minutes on (the page first, in the member's language)
            set_clock(clock, at + timedelta(minutes=10))
            page = await client.get(f"/d/{tokens[by_link_10[0].member_id]}")
            assert page.status_code == 200
            assert messages.text(by_link_10[0].language, "drill_page_ok") in page.text
            for p in by_link_10:
                got = await client.post(f"/d/{tokens[p.member_id]}", data={"answer": "ok"})
                assert got.status_code == 200, got.text
            assert (await client.get("/d/not-a-token")).status_code == 404
            # a second OK changes nothing
            again = await client.post(f"/d/{tokens[by_link_10[0].member_id]}")
            assert again.status_code == 200
            set_clock(clock, at + timedelta(minutes=40))
            for p in by_sms_40:
                await sms(client, p.phone or "", "ok")
            assert not any(drill_sms(twilio, p) for p in held)  # quiet hours still

            # 90 minutes on: the link answers count beyond 60; quiet hours are over
            set_clock(clock, at + timedelta(minutes=90))
            for p in by_link_90:
                got = await client.post(f"/d/{tokens[p.member_id]}", data={"answer": "ok"})
                assert got.status_code == 200
            await eventually(
                lambda: asyncio.sleep(0, sum(1 for p in held if drill_sms(twilio, p))),
                lambda n: n == len(held),
                "held drill SMS sent when quiet hours ended",
            )
            for p in held:
                assert len(drill_sms(twilio, p)) == 1
            set_clock(clock, at + timedelta(minutes=92))
            for p in held_by_sms:
                await sms(client, p.phone or "", "OK")

            # the results are those of the answers sent
            got = await client.get(f"/drills/{drill_id}", headers=coordinator)
            assert got.status_code == 200, got.text
            (occurrence,) = got.json()["occurrences"]
            assert (occurrence["asked"], occurrence["skipped_on_emergency"]) == (190, 10)
            results = occurrence["results"]
            overall = results["overall"]
            assert overall["asked"] == 190
            assert overall["failed"] == len(rejected)
            assert overall["answered"] == 40 + 30 + 25 + 20 + 10
            # within 5: SMS at 3 min and the held ones' at 2; 15: the link at 10; 60: SMS at 40
            assert overall["within"] == {"5": 50, "15": 80, "60": 105}
            assert overall["shares"]["15"] == round(80 / 190, 4)
            assert results["by_section"] == {"AL": overall}
            sar = [p for p in [*held, *rejected, *normal] if p.qualifications[-1].code == "SAR"]
            quick = {p.member_id for p in [*by_sms_3, *held_by_sms]}
            within_15 = quick | {p.member_id for p in by_link_10}
            within_60 = within_15 | {p.member_id for p in by_sms_40}
            assert results["by_qualification"]["SAR"]["asked"] == len(sar)
            assert results["by_qualification"]["SAR"]["within"] == {
                "5": sum(p.member_id in quick for p in sar),
                "15": sum(p.member_id in within_15 for p in sar),
                "60": sum(p.member_id in within_60 for p in sar),
            }
            assert results["by_qualification"]["FIRST_AID"]["within"] == overall["within"]
            listed = await client.get("/drills", headers=coordinator)
            assert [d["id"] for d in listed.json()] == [drill_id]
            assert (await client.get(f"/drills/{drill_id}", headers=other)).status_code == 404
            assert (await client.get(f"/drills/{drill_id}", headers=authority)).status_code == 403

            # a delivery callback: one member's SMS never arrived after all
            (lost,) = [m for m in twilio.to(never[0].phone or "") if "MUSTER TEST" in m.body]
            status = {"MessageSid": lost.sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
            got = await client.post(
                "/sms/status", data=status, headers=signed("/sms/status", status)
            )
            assert got.status_code == 204, got.text

            # whom the coordinator should look at
            got = await client.get("/drills/attention?section=AL&last=1", headers=coordinator)
            assert got.status_code == 200, got.text
            reasons = {row["member_id"]: row["reason"] for row in got.json()}
            expected = (
                {str(p.member_id): "never_answered" for p in [*never, *held_never]}
                | {str(p.member_id): "sms_failed" for p in rejected}
                | {str(never[0].member_id): "sms_failed"}
            )
            assert reasons == expected
            assert all("+355" not in (row["last_error"] or "") for row in got.json())
            refused = await client.get("/drills/attention?section=AL", headers=authority)
            assert refused.status_code == 403

            # readiness: what the data implies; authorities see counts only
            got = await client.get("/readiness/full?section=AL", headers=coordinator)
            assert got.status_code == 200, got.text
            full = got.json()
            assert (full["active_members"], full["available_now"]) == (200, 200)
            assert full["by_qualification"]["FIRST_AID"] == {
                "valid_today": 200, "valid_in_30_days": 170, "valid_in_60_days": 150,
            }  # fmt: skip
            assert full["by_qualification"]["SAR"]["valid_today"] == 4
            assert (full["last_drill"]["asked"], full["last_drill"]["answered"]) == (190, 125)
            got = await client.get("/readiness?section=AL", headers=authority)
            assert got.status_code == 200, got.text
            shown = got.json()
            assert shown["active_members"] == 200
            assert shown["by_qualification"]["SAR"] == {
                "valid_today": "< 5", "valid_in_30_days": "< 5", "valid_in_60_days": "< 5",
            }  # fmt: skip
            assert shown["last_drill"]["answered_share"] == round(125 / 190, 3)
            assert shown["last_drill"]["median_answer_seconds"] is not None
            for p in [*section, *not_asked]:
                assert str(p.member_id).encode() not in got.content
                assert p.member_id.hex.encode() not in got.content
                assert (p.phone or "").encode() not in got.content
            other_authority = bearer(key.token("authority", ["IT"], subject="auth-it"))
            assert (
                await client.get("/readiness?section=AL", headers=other_authority)
            ).status_code == 403
            assert (
                await client.get("/readiness/full?section=AL", headers=authority)
            ).status_code == 403

        # a drill is no emergency: the only alerts are the real emergency's
        async with admin_engine.connect() as conn:
            alerted = (await conn.execute(text(f'SELECT count(*) FROM "{schema}".alerts'))).scalar()
            known = (
                await conn.execute(text(f'SELECT count(*) FROM "{schema}".emergencies'))
            ).scalar()
            assert (alerted, known) == (10, 1)
            # the readiness event, published again once the clock passed the interval
            figures = (
                (
                    await conn.execute(
                        text(
                            f'SELECT value FROM "{schema}".outbox '
                            "WHERE event_type = 'muster.readiness.v1' ORDER BY id"
                        )
                    )
                )
                .scalars()
                .all()
            )
        of_al = [f for f in figures if json.loads(f)["data"]["section"] == "AL"]
        assert len(of_al) >= 2
        assert json.loads(of_al[-1])["data"]["active_members"] == 200
        for p in [*section, *not_asked]:
            for figure in figures:
                assert str(p.member_id).encode() not in figure
                assert (p.phone or "").encode() not in figure
    finally:
        service.stop()


async def test_a_monthly_drill_fires_again_at_its_next_date_once_with_two_processes(
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
    people = [member(lat=FAR, language=LANGUAGES[i % 4]) for i in range(40)]
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), people)
    services: list[ServiceProcess] = []
    try:
        services = [start_service("alerts", env, tmp_path) for _ in range(2)]
        await wait_indexed(redis_client, topics.prefix, people)
        coordinator = bearer(key.token("coordinator", ["AL"], subject="coord-al"))
        async with httpx.AsyncClient(base_url=services[0].url, timeout=30) as client:
            body = {
                "sections": ["AL"],
                "starts_at": at.isoformat(),
                "recurrence": "FREQ=MONTHLY",
                "timezone": "Europe/Tirane",
            }
            got = await client.post("/drills", json=body, headers=coordinator)
            assert got.status_code == 201, got.text
            drill_id = got.json()["id"]

            async def each_got(n: int) -> None:
                await eventually(
                    lambda: asyncio.sleep(0, [len(drill_sms(twilio, p)) for p in people]),
                    lambda counts: all(c >= n for c in counts),
                    f"occurrence {n} sent",
                )
                # and no more: both processes' loops run several more rounds meanwhile
                await asyncio.sleep(3)
                assert [len(drill_sms(twilio, p)) for p in people] == [n] * len(people)

            set_clock(clock, at + timedelta(seconds=1))
            await each_got(1)
            got = await client.get(f"/drills/{drill_id}", headers=coordinator)
            following = datetime.fromisoformat(got.json()["next_at"])
            # a month on, at the same local time
            assert following.astimezone(TIRANA).time() == at.astimezone(TIRANA).time()
            assert following.astimezone(TIRANA).day == at.astimezone(TIRANA).day or (
                following - at > timedelta(days=27)
            )
            set_clock(clock, following - timedelta(minutes=1))
            await asyncio.sleep(3)
            assert [len(drill_sms(twilio, p)) for p in people] == [1] * len(people)
            set_clock(clock, following + timedelta(seconds=1))
            await each_got(2)

        async with admin_engine.connect() as conn:
            fired = (
                (
                    await conn.execute(
                        text(
                            f'SELECT occurs_at FROM "{schema}".drill_occurrences ORDER BY occurs_at'
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert [o.astimezone(UTC) for o in fired] == [at, following.astimezone(UTC)]
    finally:
        for service in services:
            service.stop()
