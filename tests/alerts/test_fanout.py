"""From 1,000 member snapshots on Kafka to SMS at a local Twilio-compatible server, with
the alerts service as a real process: exactly the admitted members, once each, nearest
first, in their language; redeliveries and a second process change nothing; a SIGKILL
mid fan-out loses nobody and every duplicate is counted."""

from __future__ import annotations

import asyncio
import math
import random
import re
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from shapely.geometry import Point, shape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.catalog import make_envelope
from shared.events.members import MemberChanged
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
from tests.support.kafka import publish
from tests.support.processes import start_service

pytestmark = pytest.mark.slow

REPLY_WORD = {"en": "Reply YES", "fr": "Repondez OUI", "it": "Rispondi SI", "sq": "Pergjigju PO"}
TIMEZONES = ["Europe/Tirane", "Europe/Rome", "America/New_York", "Asia/Tokyo"]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The test's own great-circle distance (independent of the service's)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


def local_quiet(zone: str, inside: bool) -> tuple[time, time]:
    now = datetime.now(ZoneInfo(zone))
    if inside:
        start, end = now - timedelta(hours=2), now + timedelta(hours=2)
    else:
        start, end = now + timedelta(hours=3), now + timedelta(hours=5)
    return time(start.hour, start.minute), time(end.hour, end.minute)


def population(n: int, rng: random.Random) -> tuple[list[MemberChanged], dict[uuid.UUID, dict]]:
    """Members with every kind of reason to be left out; `facts` says what each is."""
    today = datetime.now(UTC).date()
    members, facts = [], {}
    for _ in range(n):
        lat = CENTRE[0] + rng.uniform(-0.04, 0.04)
        lon = CENTRE[1] + rng.uniform(-0.05, 0.05)
        zone = rng.choice(TIMEZONES)
        f = {
            "status": rng.choices(["active", "suspended", "expelled"], [90, 5, 5])[0],
            "consent": rng.random() > 0.05,
            "availability": rng.choices(["available", "unavailable", "back"], [80, 10, 10])[0],
            "qual": rng.choices(["valid", "none_expiry", "expired", "other"], [60, 15, 15, 10])[0],
            "quiet": rng.choices(["none", "inside", "outside"], [60, 20, 20])[0],
            "section": rng.choices(["AL", "IT", "XK"], [85, 10, 5])[0],
            "language": rng.choice(["en", "fr", "it", "sq"]),
            "lat": lat,
            "lon": lon,
        }
        quals = {
            "valid": [("FIRST_AID", today + timedelta(days=rng.randint(2, 900)))],
            "none_expiry": [("FIRST_AID", None)],
            "expired": [("FIRST_AID", today - timedelta(days=rng.randint(2, 900)))],
            "other": [("SAR", None)],
        }[f["qual"]]
        unavailable_until = None
        if f["availability"] == "back":
            unavailable_until = datetime.now(UTC) - timedelta(hours=1)
        elif f["availability"] == "unavailable" and rng.random() < 0.5:
            unavailable_until = datetime.now(UTC) + timedelta(days=1)
        m = member(
            lat=lat,
            lon=lon,
            section=f["section"],
            language=f["language"],
            timezone=zone,
            status=f["status"],
            consent_alerts=f["consent"],
            availability="available" if f["availability"] == "available" else "unavailable",
            unavailable_until=unavailable_until,
            qualifications=quals,
            quiet=None if f["quiet"] == "none" else local_quiet(zone, f["quiet"] == "inside"),
        )
        members.append(m)
        facts[m.member_id] = f
    return members, facts


def admitted_by_rules(
    facts: dict[uuid.UUID, dict], *, sections: set[str], inside, extreme: bool
) -> dict[uuid.UUID, float]:
    return {
        mid: f["distance"]
        for mid, f in facts.items()
        if f["status"] == "active"
        and f["consent"]
        and f["availability"] in ("available", "back")
        and f["qual"] in ("valid", "none_expiry")
        and (extreme or f["quiet"] != "inside")
        and f["section"] in sections
        and inside(f)
    }


async def test_exactly_the_admitted_members_get_one_sms_nearest_first(
    alerts_env: dict[str, str], twilio: FakeTwilio, topics: Topics, redis_client, tmp_path: Path
) -> None:
    rng = random.Random(4)
    members, facts = population(1000, rng)
    by_phone = {m.phone: m for m in members}
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), members)
    env = {**alerts_env, "ALERTS_SENDER_CONCURRENCY": "1"}  # arrival order = send order
    service = start_service("alerts", env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, members)

        # 1. a circle, Severe: quiet hours respected; assisting section IT, not XK
        for f in facts.values():
            f["distance"] = distance_m(CENTRE[0], CENTRE[1], f["lat"], f["lon"])
        expected = admitted_by_rules(
            facts,
            sections={"AL", "IT"},
            inside=lambda f: f["distance"] <= 3000,
            extreme=False,
        )
        assert 80 < len(expected) < 600
        circle = declared(
            radius_m=3000, members_needed=200, title="Flooding Fier", assisting_sections=["IT"]
        )
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), circle)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= len(expected), 60)
        await asyncio.sleep(1.5)  # anything extra would arrive now
        received = list(twilio.messages)
        got = [by_phone[sms.to].member_id for sms in received]
        assert len(got) == len(set(got)), "a member got two alerts"
        assert set(got) == set(expected)
        # nearest first (to the metre the service rounds to)
        assert [round(expected[mid]) for mid in got] == sorted(round(expected[mid]) for mid in got)
        for sms in received:
            m = by_phone[sms.to]
            assert REPLY_WORD[m.language] in sms.body, sms.body
            assert sms.body.startswith("MUSTER Flooding Fier")

        # 2. a polygon, Extreme (quiet hours overridden), only the nearest 30 of those inside
        twilio.messages.clear()
        polygon = {
            "type": "Polygon",
            "coordinates": [
                [[19.52, 40.69], [19.60, 40.69], [19.60, 40.715], [19.52, 40.715], [19.52, 40.69]]
            ],
        }
        area = shape(polygon)
        centre = area.centroid
        for f in facts.values():
            f["distance"] = distance_m(centre.y, centre.x, f["lat"], f["lon"])
        inside_polygon = admitted_by_rules(
            facts,
            sections={"AL"},
            inside=lambda f: area.covers(Point(f["lon"], f["lat"])),
            extreme=True,
        )
        assert any(facts[mid]["quiet"] == "inside" for mid in inside_polygon)
        # nearest first, to the metre; equal distances in member id order
        nearest = sorted(inside_polygon, key=lambda mid: (round(inside_polygon[mid]), str(mid)))[
            :30
        ]
        spill = declared(
            polygon=polygon, radius_m=None, members_needed=10, severity="Extreme",
            title="Chemical spill",
        )  # fmt: skip
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), spill)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 30, 60)
        await asyncio.sleep(1.5)
        got = [by_phone[sms.to].member_id for sms in twilio.messages]
        assert got == nearest
    finally:
        service.stop()


async def test_redelivered_declared_and_a_second_process_send_one_sms_each(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    members = [
        member(lat=CENTRE[0] + random.uniform(-0.01, 0.01), lon=CENTRE[1]) for _ in range(600)
    ]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), members)
    env = {**alerts_env, "ALERTS_SMS_RATE_PER_S": "100"}  # a fan-out of ~6 s
    first = start_service("alerts", env, tmp_path)
    second = None
    try:
        await wait_indexed(redis_client, topics.prefix, members)
        emergency = declared(radius_m=5000, members_needed=200)
        envelope = make_envelope(emergency, source="muster.dispatch")
        again = make_envelope(emergency, source="muster.dispatch")  # same facts, new event id
        await publish(topics.bootstrap, topics(EMERGENCIES), [envelope, envelope, envelope, again])
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 50, 30)
        second = start_service("alerts", env, tmp_path)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 600, 90)
        await asyncio.sleep(2.0)
        phones = [sms.to for sms in twilio.messages]
        assert sorted(phones) == sorted(m.phone for m in members)
        async with admin_engine.connect() as conn:
            senders = (
                await conn.execute(
                    text(f'SELECT count(DISTINCT claimed_by) FROM "{schema}".outbound_messages')
                )
            ).scalar_one()
            rows = (
                await conn.execute(text(f'SELECT count(*) FROM "{schema}".alerts'))
            ).scalar_one()
        assert rows == 600
        print(f"senders that took part: {senders}")
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_sigkill_mid_fan_out_loses_nobody_and_counts_duplicates(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    members = [
        member(lat=CENTRE[0] + random.uniform(-0.02, 0.02), lon=CENTRE[1]) for _ in range(1000)
    ]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), members)
    env = {
        **alerts_env,
        "ALERTS_SMS_RATE_PER_S": "300",
        # widen the window "provider accepted, row not yet marked" so the kill hits it
        "ALERTS_FAULT_PAUSE_AFTER_SEND_S": "0.2",
    }
    service = start_service("alerts", env, tmp_path)
    restarted = None
    try:
        await wait_indexed(redis_client, topics.prefix, members)
        await publish_emergency_event(
            topics.bootstrap, topics(EMERGENCIES), declared(radius_m=5000, members_needed=334)
        )
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 300, 60)
        service.kill()
        killed_at = len(twilio.messages)
        assert killed_at < 1000, "the fan-out finished before the kill"
        restarted = start_service("alerts", env, tmp_path)
        phones = {m.phone for m in members}
        assert await twilio.wait_for_async(lambda ms: phones <= {s.to for s in ms}, 90)
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(base_url=restarted.url) as client:
            metrics = (await client.get("/metrics")).text
        found = re.search(r"^muster_alerts_possible_duplicates_total ([0-9.e+]+)$", metrics, re.M)
        counted = float(found.group(1)) if found else 0.0
        async with admin_engine.connect() as conn:
            flagged = (
                await conn.execute(
                    text(
                        f'SELECT count(*) FROM "{schema}".outbound_messages '
                        "WHERE possible_duplicate"
                    )
                )
            ).scalar_one()
            open_rows = (
                await conn.execute(
                    text(
                        f'SELECT count(*) FROM "{schema}".outbound_messages '
                        "WHERE status <> 'sent'"
                    )
                )
            ).scalar_one()
        sent = [s.to for s in twilio.messages]
        duplicates = len(sent) - len(set(sent))
        print(f"killed after {killed_at} SMS; duplicates {duplicates}; counted {counted}")
        assert set(sent) == phones  # nobody missing, nobody extra
        assert open_rows == 0
        assert flagged == counted
        assert duplicates <= counted
        assert counted > 0, "the kill left no message in flight: the test proved nothing"
    finally:
        service.kill()
        if restarted is not None:
            restarted.stop()
