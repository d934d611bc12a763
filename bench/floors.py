"""The raw parts Muster's paths stand on, measured on the same stack in the same run.

- Kafka: an aiokafka produce (acks=all, idempotent, as the outbox relay sends) to consume
  round trip on a fresh one-partition topic, one record at a time: p50 / p99.
- HTTP: the rate the alerts service's own Twilio client reaches against the same local
  Twilio-compatible gateway the fan-out benchmark uses, with the fan-out's concurrency:
  the client in a process of its own, the gateway in another
  (tests.alerts.fake_twilio.GatewayProcess), so neither shares a GIL with the benchmark.

The bare GEOSEARCH and asyncpg COPY floors are measured inside `alerts_selection` and
`members_import`, on the very index and rows those paths use.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import results
from shared.settings import MusterSettings
from tests.alerts.fake_twilio import GatewayProcess

MODULE = "floors"
QUICK = bool(os.environ.get("BENCH_QUICK"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def kafka_round_trip(bootstrap: str, samples: int) -> list[float]:
    topic = f"bench-floor-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    # no consumer group: a plain assignment measures the fetch path alone
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await producer.start()
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0)])
    rtts: list[float] = []
    try:
        # warm up: metadata, the idempotent producer id, the group join and first fetch
        await producer.send_and_wait(topic, b"warm-up")
        await consumer.getone()
        for i in range(samples):
            started = time.perf_counter()
            await producer.send(topic, str(i).encode())
            await consumer.getone()
            rtts.append(time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
    return rtts


HTTP_CLIENT = """
import asyncio, sys, time
from services.alerts.providers.twilio import TwilioProvider
from services.alerts.settings import Settings

async def main(n: int, concurrency: int) -> None:
    provider = TwilioProvider(Settings())
    queue = iter(range(n))
    async def worker() -> None:
        for i in queue:
            await provider.send(f"+3556{i:08d}", "Muster floor: the raw HTTP rate")
    for _ in range(200):  # warm up the keep-alive pools
        await provider.send("+355600000000", "warm-up")
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(n / (time.perf_counter() - started))

if sys.argv[3] == "uvloop":
    import uvloop
    runner = uvloop.run
else:
    runner = asyncio.run
runner(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def http_rate(
    requests: int, concurrency: int, *, gateway_uvloop: bool = False, client_uvloop: bool = False
) -> float:
    """Requests/s of the alerts service's Twilio client (in a process of its own, as in
    the service) against the local gateway (in another process, as in the fan-out). The
    client runs on asyncio's own loop by default: on uvloop it was slower in each of four
    measured pairs (docs/performance.md), and a floor is the raw part at its best."""
    gateway = GatewayProcess(uvloop=gateway_uvloop).start()
    try:
        env = {
            **os.environ,
            **gateway.env(),
            "MUSTER_SMS_PROVIDER": "twilio",
            "ALERTS_SENDER_CONCURRENCY": str(concurrency),
        }
        loop = "uvloop" if client_uvloop else "asyncio"
        out = subprocess.run(
            [sys.executable, "-c", HTTP_CLIENT, str(requests), str(concurrency), loop],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        gateway.stop()


async def main() -> None:
    settings = MusterSettings()
    samples = 200 if QUICK else 1000
    rtts = await kafka_round_trip(settings.kafka_bootstrap_servers, samples)
    p50, p99 = statistics.median(rtts) * 1000, percentile(rtts, 0.99) * 1000
    print(
        f"kafka produce->consume round trip, {samples} records: p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )
    results.floor(MODULE, "kafka_rtt_p50", p50, "ms", better="lower")
    results.floor(MODULE, "kafka_rtt_p99", p99, "ms", better="lower")

    concurrency = int(os.environ.get("ALERTS_SENDER_CONCURRENCY", "64"))
    requests = 1500 if QUICK else 10_000
    rate = http_rate(requests, concurrency)
    print(
        f"http: the Twilio client against the local gateway, {requests} requests, "
        f"{concurrency} in flight: {rate:,.0f} requests/s"
    )
    results.floor(MODULE, "http_rate", rate, "req/s", better="higher")


if __name__ == "__main__":
    asyncio.run(main())
