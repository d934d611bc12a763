"""Selection time with many members in the Redis targeting index.

Fills the index with N members spread over Albania (default 100,000; BENCH_FULL=1 for
the issue's 1,000,000), then times the whole selection of a first wave (GEO search of
the section, snapshot fetch, the pure rules and ranking) for a few area sizes.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid
from datetime import UTC, date, datetime

import redis.asyncio as redis

from bench import results
from services.alerts.alerting import choose
from services.alerts.index import TargetingIndex, search_area
from services.alerts.selection import target_for
from services.alerts.settings import Settings
from shared.events.emergencies import Area
from shared.events.members import MemberChanged, Position, QualificationHeld

# mainland Albania, roughly
LAT, LON = (39.7, 42.6), (19.3, 21.0)
TIRANA = (41.3275, 19.8187)


def make_member(rng: random.Random, i: int) -> MemberChanged:
    # half of the members live around the cities, half anywhere
    if rng.random() < 0.5:
        lat, lon = TIRANA[0] + rng.gauss(0, 0.15), TIRANA[1] + rng.gauss(0, 0.15)
    else:
        lat, lon = rng.uniform(*LAT), rng.uniform(*LON)
    return MemberChanged(
        member_id=uuid.UUID(int=rng.getrandbits(128)),
        version=1,
        section="AL",
        status="active" if rng.random() < 0.95 else "suspended",
        language="sq",
        timezone="Europe/Tirane",
        phone=f"+3556{i:08d}",
        consent_alerts=rng.random() < 0.97,
        availability="available" if rng.random() < 0.85 else "unavailable",
        home=Position(lat=lat, lon=lon),
        qualifications=[
            QualificationHeld(code="FIRST_AID", expires_at=date(2030, 1, 1))
        ] if rng.random() < 0.7 else [],
        changed_at=datetime.now(UTC),
    )  # fmt: skip


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def main() -> None:
    n = (
        1_000_000
        if os.environ.get("BENCH_FULL")
        else int(
            os.environ.get(
                "BENCH_SELECTION_N", "50000" if os.environ.get("BENCH_QUICK") else "100000"
            )
        )
    )
    prefix = f"bench{uuid.uuid4().hex[:6]}:"
    settings = Settings(redis_prefix=prefix)
    client = redis.Redis.from_url(settings.redis_url)
    index = TargetingIndex(client, settings)
    rng = random.Random(11)
    try:
        print(f"indexing {n} members ...", flush=True)
        started = time.perf_counter()
        chunk = 10_000
        for first in range(0, n, chunk):
            await index.upsert_many(
                [make_member(rng, i) for i in range(first, min(n, first + chunk))]
            )
        print(f"  indexed in {time.perf_counter() - started:.1f} s", flush=True)
        now = datetime.now(UTC)
        print(f"selection with {n} members indexed (30 samples, first wave of 3 x needed):")
        for radius_m, needed in ((2_000, 10), (5_000, 50), (15_000, 200)):
            area = Area(lat=TIRANA[0], lon=TIRANA[1], radius_m=radius_m)
            target = target_for(
                section="AL",
                assisting_sections=[],
                area=area,
                required_qualifications=["FIRST_AID"],
                severity="Severe",
                count=needed * 3,
            )
            samples = 30
            fetch, rank, bare, found, chosen_n = [], [], [], 0, 0
            geo_key = settings.key("geo", "home", "AL")
            for _ in range(samples):
                t0 = time.perf_counter()
                in_area = await index.nearest_ids(target.sections, search_area(area))
                t1 = time.perf_counter()
                chosen, _considered = await choose(
                    index, target, search_area(area), now, live_max_age_s=1800
                )
                t2 = time.perf_counter()
                # the raw part: one GEOSEARCH of the same area for the nearest wave's worth
                await client.geosearch(
                    geo_key, longitude=area.lon, latitude=area.lat, radius=radius_m, unit="m",
                    withdist=True, sort="ASC", count=needed * 3,
                )  # fmt: skip
                t3 = time.perf_counter()
                fetch.append(t1 - t0)
                rank.append(t2 - t1)
                bare.append(t3 - t2)
                found, chosen_n = len(in_area), len(chosen)
            p50, p99 = statistics.median(rank) * 1000, _p99(rank) * 1000
            print(
                f"  radius {radius_m / 1000:>4.0f} km: {found:>6} in the area -> {chosen_n:>4}"
                f" chosen: p50 {p50:7.1f} ms, p99 {p99:7.1f} ms"
                f" (bare GEOSEARCH COUNT {needed * 3}: p99 {_p99(bare) * 1000:5.2f} ms;"
                f" listing everyone in the area: {statistics.median(fetch) * 1000:6.1f} ms)"
            )
            floor_name = f"geosearch {radius_m // 1000} km p99"
            results.floor("alerts_selection", floor_name, _p99(bare) * 1000, "ms", better="lower")
            name = f"select {needed * 3} of {n:,}, {radius_m // 1000} km p99"
            results.figure("alerts_selection", name, p99, "ms", better="lower",
                           floor=floor_name, goal=10)  # fmt: skip
    finally:
        cursor_keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=10_000)]
        for i in range(0, len(cursor_keys), 10_000):
            await client.delete(*cursor_keys[i : i + 10_000])
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
