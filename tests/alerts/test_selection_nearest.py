"""Nearest-first selection from the real Redis index returns exactly what the rules
would pick from every member at once: the widening circles and growing pages of
`TargetingIndex.nearest_pages` (which stop reading once enough are found) never skip a
nearer eligible member, at the area's edge included."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.alerts.alerting import choose
from services.alerts.index import FIRST_RING_M, RingPlan, TargetingIndex, search_area
from services.alerts.selection import select, target_for
from services.alerts.settings import Settings
from shared.events.emergencies import Area
from shared.events.members import MemberChanged, Position
from tests.alerts.members import CENTRE, member

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LIVE_MAX_AGE_S = 1800


def moved(lat: float, lon: float, distance_m: float, bearing_deg: float) -> tuple[float, float]:
    """The point `distance_m` from (lat, lon) along the bearing, on our sphere."""
    r = 6_371_008.8
    p1, l1, b = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    d = distance_m / r
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(p2), math.degrees(l2)


#: distances as a share of the area's radius: many inside, some on the edge (either side
#: of it by less than Redis's rounding), some outside
share = st.one_of(
    st.floats(0, 1.5),
    st.sampled_from([0.0, 0.5, 0.9995, 0.9999, 1.0, 1.0001, 1.0005]),
)

member_shape = st.fixed_dictionaries(
    {
        "share": share,
        "bearing": st.floats(0, 360),
        # a few members on one spot: ties in distance, and a GEO page full of equals
        "spot": st.one_of(st.none(), st.integers(0, 2)),
        # mostly eligible, so that the edge and the last places are often decided by the
        # distance alone
        "status": st.sampled_from(["active", "active", "active", "suspended"]),
        "available": st.sampled_from([True, True, True, False]),
        "qualified": st.sampled_from([True, True, True, False]),
        "section": st.sampled_from(["AL", "AL", "AL", "IT", "GR"]),
        # a live position: none, fresh (counts) or stale (home counts), elsewhere
        "live": st.one_of(
            st.none(),
            st.tuples(st.floats(0, 1.5), st.floats(0, 360), st.sampled_from([60, 7200])),
        ),
    }
)


def build(shape: dict[str, Any], radius_m: float) -> MemberChanged:
    distance = radius_m * (0.3 * shape["spot"] / 2 if shape["spot"] is not None else shape["share"])
    lat, lon = moved(*CENTRE, distance, shape["bearing"] if shape["spot"] is None else 45.0)
    live = None
    if shape["live"] is not None:
        live_share, live_bearing, age_s = shape["live"]
        live_lat, live_lon = moved(*CENTRE, radius_m * live_share, live_bearing)
        live = Position(
            lat=live_lat, lon=live_lon, at=NOW - timedelta(seconds=age_s), source="live"
        )
    return member(
        lat=lat,
        lon=lon,
        section=shape["section"],
        status=shape["status"],
        availability="available" if shape["available"] else "unavailable",
        qualifications=[("FIRST_AID", date(2030, 1, 1))] if shape["qualified"] else [],
        live=live,
    )


@pytest.fixture
async def run_prefix(redis_client: redis.Redis) -> AsyncIterator[str]:
    """A key prefix for this test, its keys removed once at the end: a SCAN per example
    would walk the whole shared Redis (millions of keys while a benchmark runs)."""
    prefix = f"tsel{uuid.uuid4().hex[:10]}:"
    yield prefix
    keys = [k async for k in redis_client.scan_iter(match=f"{prefix}*", count=10_000)]
    for start in range(0, len(keys), 10_000):
        await redis_client.delete(*keys[start : start + 10_000])


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    shapes=st.lists(member_shape, max_size=60),
    count=st.integers(1, 15),  # the caller never asks for 0 (alerting.nearest)
    radius_m=st.sampled_from([150, 600, 2_000, 9_000, 40_000]),
    assisting=st.sampled_from([[], ["IT"]]),
)
async def test_nearest_pages_select_exactly_the_nearest_eligible(
    redis_client: redis.Redis,
    run_prefix: str,
    shapes: list[dict[str, Any]],
    count: int,
    radius_m: int,
    assisting: list[str],
) -> None:
    # each example an index of its own
    index = TargetingIndex(redis_client, Settings(redis_prefix=f"{run_prefix}{uuid.uuid4().hex}:"))
    members = [build(shape, radius_m) for shape in shapes]
    area = Area(lat=CENTRE[0], lon=CENTRE[1], radius_m=radius_m)
    target = target_for(
        section="AL",
        assisting_sections=assisting,
        area=area,
        required_qualifications=["FIRST_AID"],
        severity="Severe",
        count=count,
    )
    if members:
        await index.upsert_many(members)
    chosen, considered = await choose(
        index, target, search_area(area), NOW, live_max_age_s=LIVE_MAX_AGE_S
    )
    # the oracle: the same rules over every member, no index, no pages
    expected = select(members, target, NOW, live_max_age_s=LIVE_MAX_AGE_S)
    assert [(c.member_id, c.distance_m) for c in chosen] == [
        (c.member_id, c.distance_m) for c in expected
    ]
    assert considered <= len(members)


async def test_a_wide_area_reads_only_its_nearest_members(
    redis_client: redis.Redis, run_prefix: str
) -> None:
    """3,000 members spread over 30 km: a 30 km emergency needing 10 reads about as many
    snapshots as a 1 km one, not the 3,000 in its area."""
    index = TargetingIndex(redis_client, Settings(redis_prefix=run_prefix))
    members = [
        member(lat=lat, lon=lon)
        for lat, lon in (
            moved(*CENTRE, 30_000 * math.sqrt(i / 3000), (i * 137.508) % 360) for i in range(3000)
        )
    ]
    await index.upsert_many(members)
    considered: dict[int, int] = {}
    for radius_m in (1_000, 30_000):
        area = Area(lat=CENTRE[0], lon=CENTRE[1], radius_m=radius_m)
        target = target_for(
            section="AL",
            assisting_sections=[],
            area=area,
            required_qualifications=["FIRST_AID"],
            severity="Severe",
            count=10,
        )
        chosen, considered[radius_m] = await choose(
            index, target, search_area(area), NOW, live_max_age_s=LIVE_MAX_AGE_S
        )
        assert [c.member_id for c in chosen] == [
            c.member_id for c in select(members, target, NOW, live_max_age_s=LIVE_MAX_AGE_S)
        ]
    # everyone is eligible: a page (2 x 10) and the widening's overshoot, never the area
    assert considered[30_000] <= 4 * 2 * 10
    assert considered[30_000] <= 2 * max(considered[1_000], 2 * 10)


@given(
    area_m=st.floats(1, 500_000),
    page=st.integers(1, 5_000),
    within=st.integers(0, 100_000),
    radius_share=st.floats(0.0001, 1),
)
def test_ring_plan_widens_within_bounds_and_never_past_the_area(
    area_m: float, page: int, within: int, radius_share: float
) -> None:
    plan = RingPlan(area_m, page)
    assert plan.first_radius() == min(area_m, FIRST_RING_M)
    radius = area_m * radius_share
    wider = plan.widen(radius, within=within)
    assert wider <= area_m
    assert wider == area_m or radius * 1.5 <= wider * (1 + 1e-9)
    assert wider <= radius * 8 * (1 + 1e-9)
    following = plan.next_page()
    assert following.page == 2 * page and following.want == plan.want + following.page
