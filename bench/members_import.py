"""CSV import rate of the members service (`POST /members/import`), on the local stack.

Starts a real members process on a fresh schema and topics, imports a CSV of N members
(default 10,000; `MEMBERS_BENCH_IMPORT_ROWS` to change) in one request, and prints rows
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
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import results
from services.members.importing import CSV_COLUMNS, parse_csv
from shared.events.provision import provision
from shared.events.topics import all_topics
from shared.settings import MusterSettings
from tests.support.processes import run_migrations, start_service


def make_csv(rows: int, section: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for i in range(rows):
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


async def _raw_copy(database_url: str, schema: str, body: bytes) -> float:
    """The raw part: asyncpg COPY of the same rows into a table of the same columns."""
    records = list(csv.reader(io.StringIO(body.decode())))[1:]
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        columns = ", ".join(f'"{c}" text' for c in CSV_COLUMNS)
        await conn.execute(f'CREATE TABLE "{schema}".copy_floor ({columns})')
        started = time.perf_counter()
        await conn.copy_records_to_table("copy_floor", schema_name=schema, records=records)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def main() -> None:
    default = "5000" if os.environ.get("BENCH_QUICK") else "10000"
    rows = int(
        os.environ.get(
            "MEMBERS_BENCH_IMPORT_ROWS", "50000" if os.environ.get("BENCH_FULL") else default
        )
    )
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
    }
    run_migrations("members", env)
    engine = create_async_engine(settings.database_url)
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
                body = make_csv(rows, "FR")
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
                                f'SELECT count(*) FROM "{schema}".outbox WHERE published_at IS NULL'
                            )
                        )
                    ).scalar_one()
                if pending == 0:
                    break
                await asyncio.sleep(0.1)
            published_s = time.perf_counter() - started
        finally:
            service.stop()
    copy_s = await _raw_copy(settings.database_url, schema, body)
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()
    results.floor("members_import", "asyncpg COPY", rows / copy_s, "rows/s", better="higher")
    results.figure("members_import", f"CSV import ({rows:,} rows)", rows / import_s, "rows/s",
                   better="higher", floor="asyncpg COPY", goal=20_000)  # fmt: skip
    print(f"CSV import of {rows:,} rows ({len(body) / 1e6:.1f} MB), one request, all-or-nothing:")
    print(
        f"  request (validate + bulk insert + {rows:,} snapshots into the outbox): "
        f"{import_s:.2f} s = {rows / import_s:,.0f} rows/s"
    )
    print(
        f"  validation alone (in-process parse_csv): {validate_s:.2f} s"
        f" = {rows / validate_s:,.0f} rows/s"
    )
    print(f"  raw asyncpg COPY of the same rows: {copy_s:.2f} s = {rows / copy_s:,.0f} rows/s")
    print(
        f"  until every snapshot is on Kafka: {published_s:.2f} s"
        f" = {rows / published_s:,.0f} rows/s"
    )


if __name__ == "__main__":
    asyncio.run(main())
