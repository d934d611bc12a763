"""Board updates per second sustained from the response topic, and the latency from a
`response.received` on Kafka to its SSE `row` event, with dispatch as a real process.

Default: N = 2,000 alerted members (their AlertSent first, untimed), then N responses
timed until every row shows its answer; then 100 single responses, each timed from
Kafka's acknowledgement to the SSE event on a connected console. BENCH_FULL=1 runs
N = 10,000 (BENCH_DISPATCH_N sets any N).

The responses are published while dispatch is paused (SIGSTOP, well inside the consumer
group's session timeout), so the figure is the rate the board drains a backlog at, not
the rate the bench publishes at. Its raw floor, measured in the same run on the same
PostgreSQL: the same number of board rows upserted, 100 to a transaction, with the
statement the board itself uses for a batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench import results
from shared.events.alerts import AlertSent
from shared.events.catalog import EventData, make_envelope
from shared.events.envelope import encode
from shared.events.provision import provision
from shared.events.responses import ResponseReceived
from shared.events.topics import ALERTS, RESPONSES, all_topics
from shared.settings import MusterSettings
from tests.support.processes import run_migrations, start_service
from tests.support.tokens import TestKey, bearer


async def _publish(producer: AIOKafkaProducer, topic: str, events: list[EventData]) -> None:
    futures = []
    for data in events:
        record = encode(make_envelope(data, source="bench"))
        futures.append(await producer.send(topic, value=record.value, key=record.key))
    await asyncio.gather(*futures)


async def _count(engine: AsyncEngine, schema: str, emergency_id: str, answered: bool = True) -> int:
    condition = "AND answered_at IS NOT NULL" if answered else ""
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        f'SELECT count(*) FROM "{schema}".board_rows '
                        f"WHERE emergency_id = :e {condition}"
                    ),
                    {"e": emergency_id},
                )
            ).scalar_one()
        )


#: the statement services.dispatch.board_store writes a batch's rows with (copied, so the
#: module also measures code from before it existed)
UPSERT_FLOOR_ROWS = """
INSERT INTO board_floor (emergency_id, member_id, alert_id, status, eta_minutes,
    expected_arrival_at, distance_m, wave, qualifications, answered_at, accepted_at,
    updated_at, facts)
SELECT CAST(:emergency_id AS uuid), r.member_id, r.alert_id, r.status, r.eta_minutes,
    r.expected_arrival_at, r.distance_m, r.wave, r.qualifications, r.answered_at,
    r.accepted_at, r.updated_at, r.facts
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(member_id uuid, alert_id uuid,
    status text, eta_minutes integer, expected_arrival_at timestamptz, distance_m integer,
    wave integer, qualifications jsonb, answered_at timestamptz, accepted_at timestamptz,
    updated_at timestamptz, facts jsonb)
ON CONFLICT (emergency_id, member_id) DO UPDATE SET
    alert_id = EXCLUDED.alert_id, status = EXCLUDED.status,
    eta_minutes = EXCLUDED.eta_minutes, expected_arrival_at = EXCLUDED.expected_arrival_at,
    distance_m = EXCLUDED.distance_m, wave = EXCLUDED.wave,
    qualifications = EXCLUDED.qualifications, answered_at = EXCLUDED.answered_at,
    accepted_at = EXCLUDED.accepted_at, updated_at = EXCLUDED.updated_at,
    facts = EXCLUDED.facts
"""


async def upsert_floor(engine: AsyncEngine, schema: str, n: int) -> float:
    """Rows/s of `n` answered board rows upserted, 100 to a transaction, into a copy of
    the board's table: the writes a batch of answers needs, with nothing around them."""
    emergency_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        member = str(uuid.uuid4())
        at = (now + timedelta(milliseconds=i)).isoformat()
        answer = {"responded_at": at, "event_id": str(uuid.uuid4()), "answer": "declined",
                  "eta_minutes": None, "channel": "sms"}  # fmt: skip
        facts = {"member_id": member, "alert_id": str(uuid.uuid4()), "answer": answer,
                 "sent": {"wave": 1, "sent_at": now.isoformat(), "alert_id": str(uuid.uuid4()),
                          "distance_m": 100 + i, "qualifications": ["FIRST_AID"],
                          "section": None}, "updated_at": at}  # fmt: skip
        rows.append({"member_id": member, "alert_id": facts["alert_id"], "status": "declined",
                     "eta_minutes": None, "expected_arrival_at": None, "distance_m": 100 + i,
                     "wave": 1, "qualifications": ["FIRST_AID"], "answered_at": at,
                     "accepted_at": None, "updated_at": at, "facts": facts})  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
        await conn.execute(text("CREATE TABLE board_floor (LIKE board_rows INCLUDING ALL)"))
    statement = text(UPSERT_FLOOR_ROWS)
    started = time.monotonic()
    for first in range(0, n, 100):
        async with engine.begin() as conn:
            await conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
            await conn.execute(
                statement,
                {"emergency_id": emergency_id, "rows": json.dumps(rows[first : first + 100])},
            )
    return n / (time.monotonic() - started)


async def main() -> None:
    n = int(
        os.environ.get("BENCH_DISPATCH_N")
        or (
            10_000
            if os.environ.get("BENCH_FULL")
            else 500
            if os.environ.get("BENCH_QUICK")
            else 2000
        )
    )
    latency_samples = 100
    settings = MusterSettings()
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    await provision(settings.kafka_bootstrap_servers, all_topics(prefix))
    key = TestKey()
    workdir = Path(tempfile.mkdtemp(prefix="dispatch-bench-"))
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MUSTER_TOPIC_PREFIX": prefix,
        "MUSTER_DB_SCHEMA": schema,
        "MUSTER_GROUP_ID": f"bench{uuid.uuid4().hex[:6]}",
        "MUSTER_REDIS_PREFIX": prefix,
        "MUSTER_LOG_LEVEL": "WARNING",
        "MUSTER_JWKS_URL": key.write_jwks(workdir / "jwks.json"),
        "DISPATCH_ESCALATION_DELAY_S": "3600",
        "DISPATCH_APPROVAL_MEMBERS": "1000000",
    }
    engine = create_async_engine(settings.database_url, pool_size=2)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
        enable_idempotence=True, linger_ms=5,
    )  # fmt: skip
    service = None
    try:
        run_migrations("dispatch", env)
        service = start_service("dispatch", env, workdir)
        headers = bearer(key.token("coordinator", ["AL"]))
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            created = await client.post(
                "/emergencies",
                json={"section": "AL", "title": "Bench", "severity": "Severe",
                      "area": {"lat": 40.72, "lon": 19.55, "radius_m": 5000},
                      "members_needed": 50},
                headers=headers,
            )  # fmt: skip
            created.raise_for_status()
            emergency_id = uuid.UUID(created.json()["id"])
        await producer.start()
        t0 = datetime.now(UTC)
        members = [uuid.uuid4() for _ in range(n)]
        alerts = {m: uuid.uuid4() for m in members}
        await _publish(
            producer, prefix + ALERTS,
            [AlertSent(emergency_id=emergency_id, member_id=m, alert_id=alerts[m],
                       distance_m=100 + i, language="sq", qualifications=["FIRST_AID"],
                       sent_at=t0) for i, m in enumerate(members)],
        )  # fmt: skip
        while await _count(engine, schema, str(emergency_id), answered=False) < n:
            await asyncio.sleep(0.2)
        responses: list[EventData] = [
            ResponseReceived(
                emergency_id=emergency_id, member_id=m, alert_id=alerts[m],
                answer="accepted" if i % 3 == 0 else "declined",
                eta_minutes=5 + i % 40, channel="sms",
                responded_at=t0 + timedelta(milliseconds=i),
            )
            for i, m in enumerate(members)
        ]  # fmt: skip
        # a backlog: published while dispatch is paused, then drained
        service.process.send_signal(signal.SIGSTOP)
        try:
            publish_started = time.monotonic()
            await _publish(producer, prefix + RESPONSES, responses)
            published = time.monotonic() - publish_started
        finally:
            service.process.send_signal(signal.SIGCONT)
        started = time.monotonic()
        while await _count(engine, schema, str(emergency_id)) < n:
            await asyncio.sleep(0.05)
            if time.monotonic() - started > 600:
                raise RuntimeError("the board did not catch up within 10 minutes")
        elapsed = time.monotonic() - started
        floor = await upsert_floor(engine, schema, n)
        results.floor("dispatch_board", "board_rows_upsert", floor, "rows/s", better="higher")
        results.figure("dispatch_board", f"answers applied ({n:,})", n / elapsed, "updates/s",
                       better="higher", floor="board_rows_upsert", goal=2000)  # fmt: skip
        print(f"dispatch board: {n} responses (published in {published:.2f} s while paused) "
              f"applied in {elapsed:.2f} s: {n / elapsed:,.0f} board updates/s; the same "
              f"rows upserted bare, 100 a commit: {floor:,.0f} rows/s")  # fmt: skip

        # latency: response on Kafka -> `row` event on a console's SSE stream
        seen: dict[str, float] = {}
        ready = asyncio.Event()

        async def listen() -> None:
            url = f"{service.url}/emergencies/{emergency_id}/stream"
            async with (
                httpx.AsyncClient(timeout=None) as sse,
                sse.stream("GET", url, headers=headers) as response,
            ):
                event = None
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                        if event == "board":
                            ready.set()
                    elif line.startswith("data:") and event == "row":
                        row = json.loads(line[5:])
                        seen.setdefault(f"{row['member_id']}:{row['answered_at']}",
                                        time.monotonic())  # fmt: skip

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(ready.wait(), 60)
        latencies: list[float] = []
        for i in range(latency_samples):
            member = members[(i * 7919) % n]
            at = datetime.now(UTC) + timedelta(hours=1, seconds=i)
            data = ResponseReceived(
                emergency_id=emergency_id, member_id=member, alert_id=alerts[member],
                answer="declined", channel="web", responded_at=at,
            )  # fmt: skip
            record = encode(make_envelope(data, source="bench"))
            await producer.send_and_wait(prefix + RESPONSES, value=record.value, key=record.key)
            sent = time.monotonic()
            wanted = f"{member}:{at.isoformat()}"
            while wanted not in seen and time.monotonic() - sent < 30:
                await asyncio.sleep(0.002)
            latencies.append((seen.get(wanted, float("nan")) - sent) * 1000)
        listener.cancel()
        ok = sorted(x for x in latencies if x == x)
        if ok:
            p95 = ok[min(len(ok) - 1, int(len(ok) * 0.95))]
            print(f"dispatch board: response.received on Kafka -> SSE row event, "
                  f"{len(ok)}/{latency_samples} samples: p50 {statistics.median(ok):.1f} ms, "
                  f"p95 {p95:.1f} ms, max {ok[-1]:.1f} ms")  # fmt: skip
            p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))]
            results.figure("dispatch_board", "answer on Kafka -> SSE p50", statistics.median(ok),
                           "ms", better="lower", floor="kafka_rtt_p50")  # fmt: skip
            results.figure("dispatch_board", "answer on Kafka -> SSE p99", p99, "ms",
                           better="lower", floor="kafka_rtt_p99", goal=100)  # fmt: skip
        else:
            print("dispatch board: no SSE event arrived")
    finally:
        await producer.stop()
        if service is not None:
            service.stop()
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
