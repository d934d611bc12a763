"""Time from `emergency.declared` on Kafka to the first and the last SMS received by a
local Twilio-compatible server, with the alerts service as a real process.

N members are all selected (members_needed = N / over-alert factor). Default N = 2,000;
BENCH_FULL=1 runs the issue's 10,000. The provider rate limit is set far above N per
second, so the figure is Muster's own fan-out speed (a real account sends at the rate of
its numbers: ALERTS_SMS_RATE_PER_S).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import results
from shared.events.catalog import make_envelope
from shared.events.envelope import Envelope, encode
from shared.events.provision import provision
from shared.events.topics import EMERGENCIES, MEMBERS_STATE, all_topics
from shared.settings import MusterSettings
from tests.alerts.fake_twilio import GatewayProcess
from tests.alerts.members import CENTRE, declared, member, wait_indexed
from tests.support.processes import run_migrations, start_service


async def _publish(bootstrap: str, topic: str, envelopes: list[Envelope]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=10
    )
    await producer.start()
    try:
        futures = []
        for envelope in envelopes:
            record = encode(envelope)
            futures.append(await producer.send(topic, value=record.value, key=record.key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def main() -> None:
    default = "500" if os.environ.get("BENCH_QUICK") else "2000"
    n = 10_000 if os.environ.get("BENCH_FULL") else int(os.environ.get("BENCH_ALERTS_N", default))
    settings = MusterSettings()
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    await provision(settings.kafka_bootstrap_servers, all_topics(prefix))
    # the gateway in a process of its own: in a thread here it would share this process's
    # GIL with the polling below, and the floor (bench.floors) is measured the same way
    twilio = GatewayProcess().start()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MUSTER_TOPIC_PREFIX": prefix,
        "MUSTER_DB_SCHEMA": schema,
        "MUSTER_GROUP_ID": f"bench{uuid.uuid4().hex[:6]}",
        "MUSTER_REDIS_PREFIX": prefix,
        "MUSTER_PUBLIC_BASE_URL": "https://alerts.muster.test",
        "MUSTER_LOG_LEVEL": os.environ.get("MUSTER_LOG_LEVEL", "WARNING"),
        "ALERTS_SMS_RATE_PER_S": "100000",
        "ALERTS_SENDER_CONCURRENCY": os.environ.get("ALERTS_SENDER_CONCURRENCY", "64"),
        **twilio.env(),
    }
    client = redis.Redis.from_url(settings.redis_url)
    rng = random.Random(7)
    members = [
        member(lat=CENTRE[0] + rng.uniform(-0.04, 0.04), lon=CENTRE[1] + rng.uniform(-0.04, 0.04))
        for _ in range(n)
    ]
    service = None
    try:
        run_migrations("alerts", env)
        print(f"publishing {n} member snapshots ...", flush=True)
        await _publish(
            settings.kafka_bootstrap_servers,
            prefix + MEMBERS_STATE,
            [make_envelope(m, source="bench") for m in members],
        )
        service = start_service("alerts", env, Path(tempfile.mkdtemp(prefix="bench-alerts-")))
        await wait_indexed(client, prefix, members, timeout_s=300)
        emergency = declared(radius_m=10_000, members_needed=math.ceil(n / 3))
        started = time.monotonic()
        await _publish(
            settings.kafka_bootstrap_servers,
            prefix + EMERGENCIES,
            [make_envelope(emergency, source="bench")],
        )
        deadline = started + 600
        async with httpx.AsyncClient(timeout=60) as gateway:
            while await twilio.count(gateway) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            messages = await twilio.messages(gateway)
        # `at` is the gateway's time.monotonic(): the same clock as `started` here
        arrivals = sorted(m.at for m in messages)
        if not arrivals:
            raise SystemExit("no SMS arrived: see the service log")
        first, last = arrivals[0] - started, arrivals[-1] - started
        spread = [
            arrivals[i] - started for i in range(0, len(arrivals), max(1, len(arrivals) // 10))
        ]
        print(f"alerts fan-out: {len(arrivals)} of {n} selected members got their SMS")
        print(f"  declared -> first SMS: {first * 1000:8.1f} ms")
        print(f"  declared -> last SMS:  {last * 1000:8.1f} ms")
        print(f"  throughput:            {len(arrivals) / max(last - first, 1e-9):8.0f} SMS/s")
        print(f"  median arrival:        {statistics.median(arrivals) - started:8.3f} s")
        print("  deciles (s):           " + " ".join(f"{s:.2f}" for s in spread))
        duplicates = len(arrivals) - len({m.to for m in messages})
        print(f"  duplicates:            {duplicates}")
        results.figure("alerts_fanout", f"declared -> first SMS ({n:,} selected)", first * 1000,
                       "ms", better="lower", floor="kafka_rtt_p50",
                       goal=100 if n >= 10_000 else None)  # fmt: skip
        results.figure("alerts_fanout", f"fan-out ({n:,} selected)",
                       len(arrivals) / max(last - first, 1e-9), "SMS/s", better="higher",
                       floor="http_rate", goal=3000)  # fmt: skip
        results.figure("alerts_fanout", f"declared -> last SMS ({n:,} selected)", last, "s",
                       better="lower")  # fmt: skip
    finally:
        if service is not None:
            service.stop()
        twilio.stop()
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=5000)]
        for i in range(0, len(keys), 5000):
            await client.delete(*keys[i : i + 5000])
        await client.aclose()
        engine = create_async_engine(settings.database_url)
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
