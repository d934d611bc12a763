"""Latency of `GET /availability` over 100,000 members, on the local stack.

Seeds a fresh schema with N members (default 100,000; `MEMBERS_BENCH_MEMBERS` to change)
by bulk SQL (not through the API): half spread over Italy and the Balkans, half around
five cities; 90 % active, 85 % consenting, 80 % available, 20 % with a fresh live
position, about 1.5 qualifications each, some expired. Then a real members process
answers requests with random centres and radii (5-50 km), half of them filtered by a
qualification; prints p50/p95/p99/max, sequentially and with 4 concurrent clients.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import results
from shared.settings import MusterSettings
from tests.support.processes import run_migrations, start_service

CITIES = [(41.33, 19.82), (41.90, 12.50), (45.46, 9.19), (40.85, 14.27), (42.66, 21.16)]

SEED_MEMBERS = """
INSERT INTO members (id, section, status, full_name, phone, email, language, availability,
    unavailable_until, home_lat, home_lon, live_lat, live_lon, live_at,
    consent_alerts, consent_at, version)
SELECT gen_random_uuid(), 'IT',
       CASE WHEN random() < 0.9 THEN 'active'
            WHEN random() < 0.5 THEN 'suspended' ELSE 'expelled' END,
       'Member ' || i, '+3933' || lpad(i::text, 8, '0'), NULL, 'it',
       CASE WHEN random() < 0.8 THEN 'available' ELSE 'unavailable' END,
       NULL, p.lat, p.lon,
       CASE WHEN random() < 0.2 THEN p.lat + (random() - 0.5) * 0.1 END,
       p.lon + (random() - 0.5) * 0.1,
       now() - random() * interval '30 minutes',
       random() < 0.85, now(), 1
FROM generate_series(1, :n) AS i
CROSS JOIN LATERAL (
    SELECT CASE WHEN i % 2 = 0 THEN 38 + random() * 8
                ELSE (ARRAY[41.33, 41.90, 45.46, 40.85, 42.66])[1 + i % 5]
                     + (random() + random() + random() - 1.5) * 0.3 END AS lat,
           CASE WHEN i % 2 = 0 THEN 8 + random() * 14
                ELSE (ARRAY[19.82, 12.50, 9.19, 14.27, 21.16])[1 + i % 5]
                     + (random() + random() + random() - 1.5) * 0.4 END AS lon
    WHERE i > 0
) AS p
"""

SEED_QUALIFICATIONS = """
INSERT INTO member_qualifications (member_id, code, issued_at, expires_at)
SELECT m.id, q.code, DATE '2020-01-01',
       CASE WHEN abs(hashtext(q.code || m.id::text)) % 10 = 0
            THEN DATE '2024-01-01' ELSE DATE '2030-01-01' END
FROM members m
CROSS JOIN (VALUES ('FIRST_AID', 600), ('CPR', 400), ('SAR', 200), ('ICS_100', 150),
                   ('DRIVER', 150)) AS q(code, per_mille)
-- a hash, not random(): the planner may evaluate random() once per catalogue row here
WHERE abs(hashtext(m.id::text || q.code)) % 1000 < q.per_mille
"""


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


async def _measure(client: httpx.AsyncClient, count: int, rng: random.Random) -> list[float]:
    timings = []
    for _ in range(count):
        lat, lon = rng.choice(CITIES)
        params: dict[str, str | float] = {
            "lat": lat + rng.uniform(-0.3, 0.3),
            "lon": lon + rng.uniform(-0.3, 0.3),
            "radius_km": rng.choice([5, 10, 25, 50]),
        }
        if rng.random() < 0.5:
            params["qualification"] = rng.choice(["FIRST_AID", "SAR", "CPR"])
        started = time.perf_counter()
        response = await client.get("/availability", params=params)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return timings


def _line(label: str, timings: list[float]) -> str:
    ms = sorted(t * 1000 for t in timings)
    return (
        f"  {label}: {len(ms)} requests, p50 {statistics.median(ms):.1f} ms, "
        f"p95 {_quantile(ms, 0.95):.1f} ms, p99 {_quantile(ms, 0.99):.1f} ms, max {ms[-1]:.1f} ms"
    )


async def main() -> None:
    default = "10000" if os.environ.get("BENCH_QUICK") else "100000"
    n = int(os.environ.get("MEMBERS_BENCH_MEMBERS", default))
    settings = MusterSettings()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    env = {
        "MUSTER_DB_SCHEMA": schema,
        "MUSTER_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.",
        "MUSTER_BOOTSTRAP_ADMIN_EMAIL": "bench@example.org",
        "MUSTER_BOOTSTRAP_ADMIN_PASSWORD": "bench password 123",
        "MUSTER_LOG_LEVEL": "WARNING",
        # the per-account limit (60 a minute since issue 10) would refuse the benchmark's
        # own requests: it measures the counts, not the limiter
        "MUSTER_AVAILABILITY_RATE_PER_MIN": "1000000",
    }
    run_migrations("members", env)
    engine = create_async_engine(
        settings.database_url, connect_args={"server_settings": {"search_path": schema}}
    )
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO sections (code, name, country, timezone, language) "
                "VALUES ('IT', 'Italia', 'IT', 'Europe/Rome', 'it')"
            )
        )
        await conn.execute(text(SEED_MEMBERS), {"n": n})
        await conn.execute(text(SEED_QUALIFICATIONS))
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE members"))
        await conn.execute(text("ANALYZE member_qualifications"))
    seed_s = time.perf_counter() - started
    rng = random.Random(7)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            service = start_service("members", env, Path(tmp))
            try:
                async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
                    login = await client.post(
                        "/auth/token",
                        data={"username": "bench@example.org", "password": "bench password 123"},
                    )
                    client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
                    await _measure(client, 20, rng)  # warm-up
                    quick = bool(os.environ.get("BENCH_QUICK"))
                    sequential = await _measure(client, 100 if quick else 300, rng)
                    started = time.perf_counter()
                    per_client = 40 if quick else 100
                    parallel = await asyncio.gather(
                        *(_measure(client, per_client, rng) for _ in range(4))
                    )
                    parallel_s = time.perf_counter() - started
                    sample = (
                        await client.get(
                            "/availability", params={"lat": 41.33, "lon": 19.82, "radius_km": 25}
                        )
                    ).json()
            finally:
                service.stop()
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()
    flat = [t for batch in parallel for t in batch]
    results.figure("members_availability", f"GET /availability p50 ({n:,} members)",
                   statistics.median(sequential) * 1000, "ms", better="lower")  # fmt: skip
    print(f"GET /availability over {n:,} members (seeded by SQL in {seed_s:.1f} s):")
    print(_line("sequential", sequential))
    print(_line("4 concurrent clients", flat) + f", {len(flat) / parallel_s:.0f} requests/s")
    print(
        f"  sample: 25 km around Tirana -> {sample['available']} available, "
        f"by qualification {sample['by_qualification']}"
    )


if __name__ == "__main__":
    asyncio.run(main())
