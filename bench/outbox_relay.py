"""Outbox relay throughput and commit-to-publish latency on the local stack.

Writes N events through `add_event` in transactions of 100, runs one relay, and prints
events per second and the latency from commit to broker acknowledgement (p50/p95/max).
BENCH_FULL=1 writes 50,000 events instead of 10,000. The latency is measured
afterwards on single-event transactions, with the relay polling every 50 ms.
OUTBOX_BENCH_LINGER_MS gives the relay's producer another `linger_ms` than the services'
(0), to measure the two side by side.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from bench import results
from shared.db import ensure_schema, make_engine, make_sessionmaker
from shared.events.catalog import EventData
from shared.events.provision import provision
from shared.events.responses import ResponseReceived
from shared.events.topics import all_topics
from shared.kafka import new_producer
from shared.outbox import OutboxRelay, add_events, shared_metadata
from shared.settings import MusterSettings


async def main() -> None:
    settings = MusterSettings()
    total = (
        50_000
        if os.environ.get("BENCH_FULL")
        else 2_000
        if os.environ.get("BENCH_QUICK")
        else 10_000
    )
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    await provision(settings.kafka_bootstrap_servers, all_topics(prefix))
    engine = make_engine(settings.database_url, schema, pool_size=4)
    await ensure_schema(engine, schema)
    async with engine.begin() as conn:
        await conn.run_sync(shared_metadata.create_all)
    sessions = make_sessionmaker(engine)
    emergencies = [uuid.uuid4() for _ in range(50)]
    print(f"writing {total} events in transactions of 100 ...", flush=True)
    write_started = time.perf_counter()
    for start in range(0, total, 100):
        batch: list[EventData] = [
            ResponseReceived(
                emergency_id=emergencies[i % len(emergencies)],
                member_id=uuid.uuid4(),
                alert_id=uuid.uuid4(),
                answer="accepted",
                eta_minutes=i % 60,
                channel="sms",
                responded_at=datetime.now(UTC),
            )
            for i in range(start, start + 100)
        ]
        async with sessions() as session, session.begin():
            await add_events(session, batch, source="bench")
    write_s = time.perf_counter() - write_started
    # measuring only: the relay's producer with another linger (docs/performance.md)
    linger = os.environ.get("OUTBOX_BENCH_LINGER_MS")
    if linger is None:
        producer = new_producer(settings.kafka_bootstrap_servers, "bench-relay")
    else:
        producer = new_producer(
            settings.kafka_bootstrap_servers, "bench-relay", linger_ms=int(linger)
        )
    await producer.start()
    relay = OutboxRelay(engine, producer, schema=schema, service="bench", topic_prefix=prefix)
    started = time.perf_counter()
    task = asyncio.create_task(relay.run())
    while relay.published < total:
        await asyncio.sleep(0.05)
    publish_s = time.perf_counter() - started
    # steady state: single-event transactions while the relay is idle-polling
    steady = 100 if os.environ.get("BENCH_QUICK") else 300
    for i in range(steady):
        async with sessions() as session, session.begin():
            await add_events(
                session,
                [
                    ResponseReceived(
                        emergency_id=emergencies[i % len(emergencies)],
                        member_id=uuid.uuid4(),
                        alert_id=uuid.uuid4(),
                        answer="declined",
                        channel="web",
                        responded_at=datetime.now(UTC),
                    )
                ],
                source="bench",
            )
        await asyncio.sleep(0.01)
    while relay.published < total + steady:
        await asyncio.sleep(0.05)
    relay.stop()
    await task
    await producer.stop()
    async with engine.connect() as conn:
        lags = (
            await conn.execute(
                text(
                    "SELECT extract(epoch FROM published_at - created_at) FROM outbox "
                    "ORDER BY id DESC LIMIT :n"
                ),
                {"n": steady},
            )
        ).scalars()
        lag_values = sorted(float(v) for v in lags)
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await conn.commit()
    await engine.dispose()
    print(f"outbox write: {total / write_s:,.0f} events/s ({write_s:.2f} s for {total})")
    print(f"relay publish: {total / publish_s:,.0f} events/s ({publish_s:.2f} s, backlog drained)")
    p99 = lag_values[min(len(lag_values) - 1, int(len(lag_values) * 0.99))] * 1000
    print(
        f"commit->broker-acked latency, {steady} single-event transactions: "
        f"p50 {statistics.median(lag_values) * 1000:.1f} ms, "
        f"p95 {lag_values[int(len(lag_values) * 0.95)] * 1000:.1f} ms, "
        f"p99 {p99:.1f} ms, max {lag_values[-1] * 1000:.1f} ms"
    )
    results.figure("outbox_relay", "relay throughput", total / publish_s, "events/s",
                   better="higher", goal=20_000)  # fmt: skip
    results.figure("outbox_relay", "commit -> broker ack p50",
                   statistics.median(lag_values) * 1000, "ms", better="lower",
                   floor="kafka_rtt_p50")  # fmt: skip
    results.figure("outbox_relay", "commit -> broker ack p99", p99, "ms", better="lower",
                   floor="kafka_rtt_p99", goal=10)  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
