"""CSV import rate of the members service (`POST /members/import`), on the local stack.

Starts a real members process on a fresh schema and topics, imports a CSV of N members
(default 10,000; BENCH_FULL=1: 10,000 then 50,000; `MEMBERS_BENCH_IMPORT_ROWS=10000,50000`
to choose) in one request each, and prints rows
per second for the request (validation + bulk insert + snapshots into the outbox), for
the validation alone (in this process), and until the relay has published every snapshot.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from pathlib import Path

import asyncpg
import httpx
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import results
from services.members.importing import CSV_COLUMNS, parse_csv
from services.members.snapshots import build_snapshot
from shared.events import encode, make_envelope
from shared.events.provision import provision
from shared.events.topics import all_topics
from shared.settings import MusterSettings
from tests.support.processes import run_migrations, start_service


def make_csv(rows: int, section: str, first: int = 0) -> bytes:
    """`rows` members; `first` offsets the phone numbers, so files of one run never clash."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for i in range(first, first + rows):
        writer.writerow(
            [
                section,
                f"Member {i}",
                f"+3361{i:07d}",
                f"m{i}@example.org",
                ["fr", "en", "it", "sq"][i % 4],
                "FIRST_AID:2030-01-01;CPR:2029-06-30" if i % 2 else "SAR",
                f"{43 + (i % 1000) / 500:.5f}",
                f"{1 + (i % 700) / 300:.5f}",
                "available",
                "23:00-06:30" if i % 3 == 0 else "",
                "true",
            ]
        )
    return out.getvalue().encode()


async def _raw_copy(database_url: str, schema: str, body: bytes, table: str) -> float:
    """The raw part: asyncpg COPY of the same rows into a table of the same columns."""
    records = list(csv.reader(io.StringIO(body.decode())))[1:]
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        columns = ", ".join(f'"{c}" text' for c in CSV_COLUMNS)
        await conn.execute(f'CREATE TABLE "{schema}"."{table}" ({columns})')
        started = time.perf_counter()
        await conn.copy_records_to_table(table, schema_name=schema, records=records)
        return time.perf_counter() - started
    finally:
        await conn.close()


def envelope_costs_us(count: int) -> dict[str, float]:
    """CPU microseconds an imported row spends, in this process, on its snapshot model,
    its envelope (`make_envelope`) and its record (`encode`), and on the SDK's own
    structured encoding of the same envelope (what `encode` did before orjson)."""
    changed_at = datetime.now(UTC)
    members = [
        {
            "id": uuid.uuid4(),
            "home_lat": 43 + (i % 1000) / 500,
            "home_lon": 1 + (i % 700) / 300,
            "live_lat": None,
            "live_lon": None,
            "live_at": None,
            "quiet_start": time_of_day(23, 0) if i % 3 == 0 else None,
            "quiet_end": time_of_day(6, 30) if i % 3 == 0 else None,
            "section": "FR",
            "status": "active",
            "language": ["fr", "en", "it", "sq"][i % 4],
            "phone": f"+3361{i:07d}",
            "consent_alerts": True,
            "availability": "available",
            "unavailable_until": None,
        }
        for i in range(count)
    ]
    held = [{"code": "FIRST_AID", "issued_at": None, "expires_at": date(2030, 1, 1)}]
    started = time.process_time()
    snapshots = [
        build_snapshot(m, held, timezone="Europe/Paris", version=1, changed_at=changed_at)
        for m in members
    ]
    snapshot_s = time.process_time() - started
    started = time.process_time()
    envelopes = [make_envelope(s, source="members") for s in snapshots]
    envelope_s = time.process_time() - started
    started = time.process_time()
    for envelope in envelopes:
        encode(envelope)
    encode_s = time.process_time() - started
    started = time.process_time()
    for envelope in envelopes:
        ce_kafka.to_structured(envelope.to_cloudevent(), JSONFormat(), key_mapper=_subject)
    sdk_s = time.process_time() - started
    return {
        "snapshot": snapshot_s / count * 1e6,
        "make_envelope": envelope_s / count * 1e6,
        "encode": encode_s / count * 1e6,
        "sdk": sdk_s / count * 1e6,
    }


def _subject(event: BaseCloudEvent) -> str | None:
    return event.get_subject()


@dataclass(frozen=True)
class Run:
    rows: int
    body: bytes
    validate_s: float
    import_s: float
    published_s: float


async def main() -> None:
    default = "5000" if os.environ.get("BENCH_QUICK") else "10000"
    sizes = [
        int(size)
        for size in os.environ.get(
            "MEMBERS_BENCH_IMPORT_ROWS", "10000,50000" if os.environ.get("BENCH_FULL") else default
        ).split(",")
    ]
    settings = MusterSettings()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    await provision(settings.kafka_bootstrap_servers, all_topics(prefix))
    env = {
        "MUSTER_DB_SCHEMA": schema,
        "MUSTER_TOPIC_PREFIX": prefix,
        "MUSTER_BOOTSTRAP_ADMIN_EMAIL": "bench@example.org",
        "MUSTER_BOOTSTRAP_ADMIN_PASSWORD": "bench password 123",
        "MUSTER_LOG_LEVEL": "WARNING",
        "MUSTER_IMPORT_MAX_ROWS": str(max(sizes)),
        # one statement of a 50,000-row import (its COPY, the phone check) can outlast
        # the 30 s default on a loaded machine: the service then answers 503
        "MUSTER_DB_STATEMENT_TIMEOUT_S": os.environ.get("MUSTER_DB_STATEMENT_TIMEOUT_S", "300"),
    }
    run_migrations("members", env)
    engine = create_async_engine(settings.database_url)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        service = start_service("members", env, Path(tmp))
        try:
            async with httpx.AsyncClient(base_url=service.url, timeout=600) as client:
                login = await client.post(
                    "/auth/token",
                    data={"username": "bench@example.org", "password": "bench password 123"},
                )
                client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
                await client.post(
                    "/sections",
                    json={
                        "code": "FR",
                        "name": "France",
                        "country": "FR",
                        "timezone": "Europe/Paris",
                        "language": "fr",
                    },
                )
                first = 0
                for rows in sizes:
                    body = make_csv(rows, "FR", first)
                    first += rows
                    started = time.perf_counter()
                    parsed, errors = parse_csv(body.decode(), max_rows=rows)
                    validate_s = time.perf_counter() - started
                    assert not errors and len(parsed) == rows
                    started = time.perf_counter()
                    response = await client.post(
                        "/members/import", content=body, headers={"Content-Type": "text/csv"}
                    )
                    import_s = time.perf_counter() - started
                    assert response.status_code == 201, response.text[:2000]
                    assert response.json()["imported"] == rows
                    while True:
                        async with engine.connect() as conn:
                            pending = (
                                await conn.execute(
                                    text(
                                        f'SELECT count(*) FROM "{schema}".outbox'
                                        " WHERE published_at IS NULL"
                                    )
                                )
                            ).scalar_one()
                        if pending == 0:
                            break
                        await asyncio.sleep(0.1)
                    published_s = time.perf_counter() - started
                    runs.append(Run(rows, body, validate_s, import_s, published_s))
                    print(f"  {rows:,} rows imported in {import_s:.2f} s", flush=True)
        finally:
            service.stop()
    for run in runs:
        rows = run.rows
        copy_s = await _raw_copy(settings.database_url, schema, run.body, f"copy_floor_{rows}")
        floor = f"asyncpg COPY ({rows:,} rows)"
        results.floor("members_import", floor, rows / copy_s, "rows/s", better="higher")
        results.figure("members_import", f"CSV import ({rows:,} rows)", rows / run.import_s,
                       "rows/s", better="higher", floor=floor, goal=20_000)  # fmt: skip
        results.figure("members_import", f"CSV validation alone ({rows:,} rows)",
                       rows / run.validate_s, "rows/s", better="higher", floor=floor)  # fmt: skip
        print(
            f"CSV import of {rows:,} rows ({len(run.body) / 1e6:.1f} MB), one request,"
            " all-or-nothing:"
        )
        print(
            f"  request (validate + bulk insert + {rows:,} snapshots into the outbox): "
            f"{run.import_s:.2f} s = {rows / run.import_s:,.0f} rows/s"
        )
        print(
            f"  validation alone (in-process parse_csv): {run.validate_s:.2f} s"
            f" = {rows / run.validate_s:,.0f} rows/s"
        )
        print(f"  raw asyncpg COPY of the same rows: {copy_s:.2f} s = {rows / copy_s:,.0f} rows/s")
        print(
            f"  until every snapshot is on Kafka: {run.published_s:.2f} s"
            f" = {rows / run.published_s:,.0f} rows/s"
        )
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()
    costs = envelope_costs_us(min(sizes[0], 5000))
    for name in ("snapshot", "make_envelope", "encode"):
        results.figure("members_import", f"a row's {name} (in process, CPU)", costs[name],
                       "us", better="lower")  # fmt: skip
    print(
        "in process, CPU time a row: snapshot model {snapshot:.1f} us, make_envelope"
        " {make_envelope:.1f} us, encode {encode:.1f} us (the SDK's encoding of the same"
        " envelope: {sdk:.1f} us)".format(**costs)
    )


if __name__ == "__main__":
    asyncio.run(main())
