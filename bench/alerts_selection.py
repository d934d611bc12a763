"""Selection time with many members in the Redis targeting index.

Fills the index with N members spread over Albania (default 100,000; BENCH_FULL=1 for
the issue's 1,000,000), then times the whole selection of the 100 nearest eligible
members (`alerting.choose`: the index's nearest pages, snapshot fetch, the pure rules and
ranking) in 2, 5 and 15 km areas around Tirana, beside two raw floors measured in the
same loop: one GEOSEARCH of the whole area for 100 (the issue's floor; Redis reads every
member of the area for it), and one GEOSEARCH of just the circle selection read.
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
from services.alerts.selection import Chosen, target_for
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


#: the issue's measure: the 100 nearest eligible members, whatever the radius
NEEDED = 100
SAMPLES = 30 if os.environ.get("BENCH_QUICK") else 50


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def main() -> None:
    n = (
        1_000_000
        if os.environ.get("BENCH_FULL")
        else int(
            os.environ.get(
                "BENCH_SELECTION_N", "20000" if os.environ.get("BENCH_QUICK") else "100000"
            )
        )
    )
    # BENCH_SELECTION_KEEP=1 keeps the filled index (same members: the seed is fixed) for
    # the next run, so that two versions of the code can be compared on one index
    # without minutes of filling each; remove it with BENCH_SELECTION_KEEP=drop
    keep = os.environ.get("BENCH_SELECTION_KEEP", "")
    prefix = f"benchsel{n}:" if keep else f"bench{uuid.uuid4().hex[:6]}:"
    settings = Settings(redis_prefix=prefix)
    # listing a 15 km area of 1,000,000 (214,000 members) outlasts redis-py's default
    # timeout on a loaded machine
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=120)
    index = TargetingIndex(client, settings)
    rng = random.Random(11)
    filled = settings.key("bench", "filled")
    try:
        if keep == "drop":
            return
        if await client.get(filled) != str(n).encode():
            print(f"indexing {n:,} members ...", flush=True)
            started = time.perf_counter()
            chunk = 10_000
            for first in range(0, n, chunk):
                await index.upsert_many(
                    [make_member(rng, i) for i in range(first, min(n, first + chunk))]
                )
            await client.set(filled, str(n))
            print(f"  indexed in {time.perf_counter() - started:.1f} s", flush=True)
        now = datetime.now(UTC)
        geo_key = settings.key("geo", "home", "AL")
        print(f"the {NEEDED} nearest eligible with {n:,} members indexed ({SAMPLES} samples):")
        for radius_m in (2_000, 5_000, 15_000):
            area = Area(lat=TIRANA[0], lon=TIRANA[1], radius_m=radius_m)
            target = target_for(
                section="AL",
                assisting_sections=[],
                area=area,
                required_qualifications=["FIRST_AID"],
                severity="Severe",
                count=NEEDED,
            )
            in_area = len(await index.nearest_ids(target.sections, search_area(area)))
            select_s, bare_s, page_s, cpu_s, considered = [], [], [], [], 0
            chosen: list[Chosen] = []
            for _ in range(SAMPLES):
                c0, t0 = time.process_time(), time.perf_counter()
                chosen, considered = await choose(
                    index, target, search_area(area), now, live_max_age_s=1800
                )
                t1 = time.perf_counter()
                # this process's own CPU (decode, rules, ranking): what the load around
                # it cannot inflate, unlike the wall clock
                cpu_s.append(time.process_time() - c0)
                # the floor: one GEOSEARCH of the same area for as many as wanted
                await client.geosearch(
                    geo_key, longitude=area.lon, latitude=area.lat, radius=radius_m, unit="m",
                    withdist=True, sort="ASC", count=NEEDED,
                )  # fmt: skip
                t2 = time.perf_counter()
                # the least Redis can do: one GEOSEARCH of the circle that holds exactly
                # the members selection read (a wide area's floor above reads all of it)
                await client.geosearch(
                    geo_key, longitude=area.lon, latitude=area.lat,
                    radius=max(c.distance_m for c in chosen) + 1.0, unit="m",
                    withdist=True, sort="ASC", count=considered,
                )  # fmt: skip
                t3 = time.perf_counter()
                select_s.append(t1 - t0)
                bare_s.append(t2 - t1)
                page_s.append(t3 - t2)
            p50, p99 = statistics.median(select_s) * 1000, _p99(select_s) * 1000
            print(
                f"  radius {radius_m / 1000:>4.0f} km: {in_area:>7,} in the area, {considered:>4}"
                f" read -> {len(chosen):>3} chosen: p50 {p50:6.2f} ms, p99 {p99:6.2f} ms"
                f" (CPU p50 {statistics.median(cpu_s) * 1000:5.2f} ms)"
                f" | bare GEOSEARCH of the area COUNT {NEEDED}: p50"
                f" {statistics.median(bare_s) * 1000:6.2f} ms, p99 {_p99(bare_s) * 1000:6.2f} ms"
                f" | GEOSEARCH of the circle read: p99 {_p99(page_s) * 1000:5.2f} ms",
                flush=True,
            )
            km = radius_m // 1000
            floor_name = f"geosearch {km} km p99"
            results.floor("alerts_selection", floor_name, _p99(bare_s) * 1000, "ms", better="lower")
            results.floor(
                "alerts_selection", f"geosearch nearest {considered} ({km} km) p99",
                _p99(page_s) * 1000, "ms", better="lower",
            )  # fmt: skip
            name = f"nearest {NEEDED} eligible of {n:,}, {km} km p99"
            results.figure("alerts_selection", name, p99, "ms", better="lower",
                           floor=floor_name, goal=10)  # fmt: skip
            results.figure(
                "alerts_selection", f"nearest {NEEDED} eligible, {km} km p50", p50, "ms",
                better="lower", floor=f"geosearch {km} km p50",
            )  # fmt: skip
            results.floor(
                "alerts_selection", f"geosearch {km} km p50", statistics.median(bare_s) * 1000,
                "ms", better="lower",
            )  # fmt: skip
    finally:
        if keep in ("", "drop"):
            cursor_keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=10_000)]
            for i in range(0, len(cursor_keys), 10_000):
                await client.delete(*cursor_keys[i : i + 10_000])
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
