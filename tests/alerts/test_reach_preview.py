"""The reach preview: its counting (pure: one reason per member, in the documented order,
and `eligible` is exactly what selection would return), then `POST /reach/preview` on a
real alerts process over real Redis, Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.erasure import phone_pseudonym
from services.alerts.reach import REASONS, count_reach, exclusion
from services.alerts.selection import Target, select, target_for
from shared.events.emergencies import Area, EmergencyDeclared
from shared.events.members import Position
from tests.alerts.answers_support import sms
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
from tests.support.processes import start_service
from tests.support.tokens import TestKey, bearer

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 13:00 in Tirana


def circle(
    radius_m: int = 3000, severity: str = "Severe", required: tuple[str, ...] = ("FIRST_AID",)
) -> Target:
    return target_for(
        section="AL",
        assisting_sections=["IT"],
        area=Area(lat=CENTRE[0], lon=CENTRE[1], radius_m=radius_m),
        required_qualifications=list(required),
        severity=severity,
        count=10_000,
    )


def test_each_reason_and_the_order() -> None:
    target = circle()
    ok = member()
    far = member(lat=CENTRE[0] + 0.1)
    other_section = member(section="FR")
    # outside wins over everything after it
    far_and_stopped = member(lat=CENTRE[0] + 0.1, consent_alerts=False)
    stale_live = member(
        lat=CENTRE[0] + 0.2,
        live=Position(lat=CENTRE[0], lon=CENTRE[1], at=NOW - timedelta(hours=3), source="live"),
    )
    no_consent = member(consent_alerts=False, status="suspended")
    no_phone = member(phone=None)
    opted_out = member()
    suspended = member(status="suspended", qualifications=[])
    unavailable = member(availability="unavailable")
    expired = member(qualifications=[("FIRST_AID", date(2026, 11, 22))], quiet=(time(12), time(14)))
    committed = member(quiet=(time(12), time(14)))
    quiet = member(quiet=(time(12, 30), time(14, 0)))
    expected = [
        (ok, None),
        (far, "outside"),
        (other_section, "outside"),
        (far_and_stopped, "outside"),
        (stale_live, "outside"),
        (no_consent, "no_consent"),
        (no_phone, "no_consent"),
        (opted_out, "no_consent"),
        (suspended, "unavailable"),
        (unavailable, "unavailable"),
        (expired, "unqualified"),
        (committed, "committed"),
        (quiet, "quiet_hours"),
    ]
    for person, reason in expected:
        got = exclusion(
            person,
            target,
            NOW,
            live_max_age_s=1800,
            committed={committed.member_id},
            opted_out_phones={opted_out.phone or ""},
        )
        assert got == reason, (person, got, reason)
    # at Extreme, quiet hours hold nobody
    assert exclusion(quiet, circle(severity="Extreme"), NOW, live_max_age_s=1800) is None


def test_first_wave_is_capped_by_eligible_and_beyond_search_counts_as_outside() -> None:
    people = [member(lat=CENTRE[0] + i * 0.001) for i in range(10)]
    reach = count_reach(
        [*people, people[0]], circle(), NOW, live_max_age_s=1800,
        members_needed=2, over_alert_factor=3, outside_beyond_search=7,
    )  # fmt: skip
    assert (reach.eligible, reach.first_wave) == (10, 6)
    assert reach.excluded["outside"] == 7
    assert reach.considered == 17
    few = count_reach(people[:4], circle(), NOW, live_max_age_s=1800,
                      members_needed=5, over_alert_factor=3)  # fmt: skip
    assert few.first_wave == 4


members_strategy = st.builds(
    lambda lat, lon, status, consent, phone, avail, expiry, sec, quiet, live_age: member(
        lat=lat, lon=lon, status=status, consent_alerts=consent, availability=avail,
        qualifications=[("FIRST_AID", expiry)], section=sec,
        quiet=(time(quiet, 0), time((quiet + 3) % 24, 0)) if quiet is not None else None,
        **({} if phone else {"phone": None}),
        live=None if live_age is None else Position(
            lat=CENTRE[0], lon=CENTRE[1], at=NOW - timedelta(minutes=live_age), source="live"
        ),
    ),
    st.floats(CENTRE[0] - 0.05, CENTRE[0] + 0.05),
    st.floats(CENTRE[1] - 0.05, CENTRE[1] + 0.05),
    st.sampled_from(["active", "suspended", "expelled"]),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["available", "unavailable"]),
    st.one_of(st.none(), st.dates(date(2026, 1, 1), date(2028, 1, 1))),
    st.sampled_from(["AL", "IT", "FR"]),
    st.one_of(st.none(), st.integers(0, 23)),
    st.one_of(st.none(), st.integers(0, 120)),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    people=st.lists(members_strategy, max_size=40),
    radius=st.integers(100, 8000),
    severity=st.sampled_from(["Extreme", "Severe", "Minor"]),
    required=st.sampled_from([(), ("FIRST_AID",)]),
    needed=st.integers(1, 20),
    beyond=st.integers(0, 50),
    data=st.data(),
)
def test_reasons_partition_the_considered_and_eligible_is_selection(  # type: ignore[no-untyped-def]
    people, radius, severity, required, needed, beyond, data
) -> None:
    ids = [m.member_id for m in people]
    committed = data.draw(st.sets(st.sampled_from(ids))) if ids else set()
    stopped = (
        data.draw(st.sets(st.sampled_from([m.phone for m in people if m.phone])))
        if any(m.phone for m in people)
        else set()
    )
    target = circle(radius, severity, required)
    reach = count_reach(
        people, target, NOW, live_max_age_s=30 * 60, members_needed=needed,
        over_alert_factor=3, committed=committed, opted_out_phones=stopped,
        outside_beyond_search=beyond,
    )  # fmt: skip
    # every considered member in exactly one bucket
    assert set(reach.excluded) == set(REASONS)
    assert all(n >= 0 for n in reach.excluded.values())
    assert reach.considered == len(set(ids)) + beyond
    # eligible is what selection returns with no cap, and the first wave what it returns
    # with the first wave's cap
    chosen = select(people, target, NOW, live_max_age_s=30 * 60, committed=committed,
                    opted_out_phones=stopped)  # fmt: skip
    assert reach.eligible == len(chosen)
    capped = select(
        people, dataclasses.replace(target, count=needed * 3), NOW,
        live_max_age_s=30 * 60, committed=committed, opted_out_phones=stopped,
    )  # fmt: skip
    assert reach.first_wave == len(capped)
    # each member's own verdict agrees with selection's
    chosen_ids = {c.member_id for c in chosen}
    for person in people:
        verdict = exclusion(person, target, NOW, live_max_age_s=30 * 60, committed=committed,
                            opted_out_phones=stopped)  # fmt: skip
        assert (verdict is None) == (person.member_id in chosen_ids)


# --- the endpoint, on a real alerts process --------------------------------------------


def _quiet_now(zone: str = "Europe/Tirane") -> tuple[time, time]:
    """A quiet window around the present moment, in the member's own time zone."""
    local = datetime.now(ZoneInfo(zone))
    return (local - timedelta(hours=1)).time(), (local + timedelta(hours=1)).time()


async def test_preview_counts_each_reason_and_matches_the_wave_sent(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,  # type: ignore[no-untyped-def]
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    key = TestKey()
    env = {
        **alerts_env,
        "MUSTER_JWKS_URL": key.write_jwks(tmp_path / "jwks.json"),
        "ALERTS_REACH_PREVIEW_RATE_PER_MIN": "8",
        "ALERTS_PSEUDONYM_KEY": "reach-preview-test-key",
    }
    lat, lon = CENTRE
    eligible = [member(lat=lat + i * 0.001, lon=lon) for i in range(4)]
    helper = member(lat=lat - 0.002, lon=lon, section="IT", language="it")  # assisting: eligible
    # the committed member lives 2.2 km north: alone inside the other emergency's circle
    busy = member(lat=lat + 0.02, lon=lon, qualifications=[])
    busy_first_aid = busy.model_copy(
        update={"qualifications": eligible[0].qualifications, "version": 2}
    )
    excluded = {
        "outside": [
            member(lat=lat + 0.1, lon=lon),
            member(lat=lat, lon=lon + 0.2),
            member(lat=lat + 0.1, lon=lon, section="IT"),
        ],
        "no_consent": [member(consent_alerts=False)],
        "unavailable": [member(availability="unavailable"), member(status="suspended")],
        "unqualified": [
            member(qualifications=[("FIRST_AID", date(2020, 1, 1))]),
            member(qualifications=[("SAR", None)]),
        ],
        "quiet_hours": [member(quiet=_quiet_now())],
    }
    not_named = member(section="FR", timezone="Europe/Paris")  # inside, but no section named
    people = [*eligible, helper, busy, not_named, *(m for ms in excluded.values() for m in ms)]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), people)
    service = start_service("alerts", env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, people)
        # another active emergency that `busy` accepts: committed there
        elsewhere = EmergencyDeclared(
            emergency_id=uuid.uuid4(), section="AL", title="Elsewhere", severity="Severe",
            area=Area(lat=lat + 0.02, lon=lon, radius_m=150), required_qualifications=[],
            members_needed=1, declared_at=datetime.now(UTC),
        )  # fmt: skip
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), elsewhere)
        assert await twilio.wait_for_async(lambda _: bool(twilio.to(busy.phone or "")), 60)
        # now `busy` holds first aid too: only being committed keeps them out
        await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [busy_first_aid])
        await wait_indexed(redis_client, topics.prefix, [busy_first_aid])
        coordinator = bearer(key.token("coordinator", ["AL"], subject="coord-al"))
        body = {
            "section": "AL",
            "area": {"lat": lat, "lon": lon, "radius_m": 3000},
            "required_qualifications": ["FIRST_AID"],
            "assisting_sections": ["IT"],
            "severity": "Severe",
            "members_needed": 1,
        }
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            answered = await sms(client, busy.phone or "", "YES 10")
            assert answered.status_code == 200, answered.text

            got = await client.post("/reach/preview", json=body, headers=coordinator)
            assert got.status_code == 200, got.text
            assert got.json() == {
                "eligible": 5,
                "first_wave": 3,
                "excluded": {
                    "outside": 3,
                    "no_consent": 1,
                    "unavailable": 2,
                    "unqualified": 2,
                    "committed": 1,
                    "quiet_hours": 1,
                },
                "considered": 15,
            }
            # Extreme: quiet hours hold nobody; more needed: a bigger first wave
            extreme = {**body, "severity": "Extreme", "members_needed": 4}
            got = (await client.post("/reach/preview", json=extreme, headers=coordinator)).json()
            assert (got["eligible"], got["first_wave"], got["excluded"]["quiet_hours"]) == (
                6, 6, 0,
            )  # fmt: skip
            # a polygon, a square of about 1.1 km around the centre, also names the same
            square = [[lon - 0.007, lat - 0.005], [lon + 0.007, lat - 0.005],
                      [lon + 0.007, lat + 0.005], [lon - 0.007, lat + 0.005],
                      [lon - 0.007, lat - 0.005]]  # fmt: skip
            polygon = {**body, "area": {"polygon": {"type": "Polygon", "coordinates": [square]}}}
            got = (await client.post("/reach/preview", json=polygon, headers=coordinator)).json()
            assert got["eligible"] == 5 and got["excluded"]["committed"] == 0  # busy is outside
            assert got["considered"] == 15

            # who may ask
            authority = bearer(key.token("authority", ["AL"], subject="auth-al"))
            refused = await client.post("/reach/preview", json=body, headers=authority)
            assert refused.status_code == 403
            other = bearer(key.token("coordinator", ["IT"], subject="coord-it"))
            refused = await client.post("/reach/preview", json=body, headers=other)
            assert refused.status_code == 403
            assert (await client.post("/reach/preview", json=body)).status_code == 401
            admin = bearer(key.token("admin", [], subject="admin"))
            assert (
                await client.post("/reach/preview", json=body, headers=admin)
            ).status_code == 200

            # bad input: 422 naming the field
            bowtie = [[lon, lat], [lon + 0.01, lat + 0.01], [lon + 0.01, lat],
                      [lon, lat + 0.01], [lon, lat]]  # fmt: skip
            bad = {**body, "area": {"polygon": {"type": "Polygon", "coordinates": [bowtie]}}}
            refused = await client.post("/reach/preview", json=bad, headers=coordinator)
            assert refused.status_code == 422
            assert refused.json()["detail"][0]["loc"][-2:] == ["area", "polygon"]
            assert "Self-intersection" in refused.json()["detail"][0]["msg"]
            for field, value in (("members_needed", 0), ("required_qualifications", ["first aid"])):
                refused = await client.post(
                    "/reach/preview", json={**body, field: value}, headers=coordinator
                )
                assert refused.status_code == 422
                assert field in refused.json()["detail"][0]["loc"]
            zero = {**body, "area": {"lat": lat, "lon": lon, "radius_m": 0}}
            refused = await client.post("/reach/preview", json=zero, headers=coordinator)
            assert refused.json()["detail"][0]["loc"][-2:] == ["area", "radius_m"]

            # per account, 8 a minute: a fresh account, well inside one minute's window
            if datetime.now().second >= 50:
                await asyncio.sleep(61 - datetime.now().second)
            burst = bearer(key.token("coordinator", ["AL"], subject="coord-burst"))
            statuses = [
                (await client.post("/reach/preview", json=body, headers=burst)).status_code
                for _ in range(9)
            ]
            assert statuses == [200] * 8 + [429]

            # an erased member's STOP, kept hashed, holds for their number re-added later:
            # the preview leaves them out as selection does
            async with admin_engine.begin() as conn:
                await conn.execute(
                    text(
                        f'INSERT INTO "{schema}".erased_opt_outs (phone_hash, opted_out_at) '
                        "VALUES (:h, now())"
                    ),
                    {"h": phone_pseudonym(eligible[3].phone or "", b"reach-preview-test-key")},
                )
            fresh = bearer(key.token("coordinator", ["AL"], subject="coord-erased"))
            got = (await client.post("/reach/preview", json=body, headers=fresh)).json()
            assert (got["eligible"], got["excluded"]["no_consent"]) == (4, 2)
            assert (
                await client.post("/reach/preview", json=body, headers=admin)
            ).status_code == 200

        # the preview said the first wave is 3: the emergency declared with it alerts 3
        before = len(twilio.messages)
        wave = declared(radius_m=3000, members_needed=1, assisting_sections=["IT"])
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), wave)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= before + 3, 60)
        await asyncio.sleep(2.0)  # nothing more comes
        sent_to = {m.to for m in twilio.messages[before:]}
        assert len(sent_to) == 3
        assert sent_to <= {m.phone for m in [*eligible, helper]}
    finally:
        service.stop()
