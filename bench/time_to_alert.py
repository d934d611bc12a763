"""Time to alert: from `POST /emergencies` returning to the first SMS at the gateway.

Members, alerts (sending to the local Twilio-compatible server of the tests) and dispatch
run as real processes on one prefix of topics, each in a schema of its own. The members
are imported by CSV into members and indexed by alerts from their snapshots; then
emergencies (members_needed 1 to 5, default 60, at least 50) are declared one after
another through dispatch's `POST /emergencies`, each waiting for its first SMS before
the next. Prints p50 / p95 / p99 of (first SMS received) - (response received).

BENCH_PROFILE=1 also records alerts and dispatch with py-spy during the declarations
(`--format raw`, collapsed stacks in bench/results/profile-<service>.txt; see
docs/performance.md for how they are read). BENCH_TTA_EMERGENCIES sets the count.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import results
from services.members.importing import CSV_COLUMNS
from shared.events.provision import provision
from shared.events.topics import all_topics
from shared.settings import MusterSettings
from tests.alerts.fake_twilio import FakeTwilio
from tests.support.processes import ServiceProcess, free_port, run_migrations, start_service

MODULE = "time_to_alert"
QUICK = bool(os.environ.get("BENCH_QUICK"))
ADMIN_EMAIL = "bench.admin@example.org"
PASSWORD = "bench password, long enough to pass"
COORDINATOR_EMAIL = "bench.coordinator@example.org"
CENTRE = (40.7239, 19.5561)  # Fier
SECTION = "AL"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def members_csv(count: int, rng: random.Random) -> str:
    phone_base = rng.randrange(1_000_000, 8_000_000)
    lines = [",".join(CSV_COLUMNS)]
    for i in range(count):
        lat = CENTRE[0] + rng.uniform(-0.03, 0.03)
        lon = CENTRE[1] + rng.uniform(-0.03, 0.03)
        lines.append(
            f"{SECTION},Member {i},+35569{phone_base + i:07d},,sq,FIRST_AID:2031-01-01,"
            f"{lat:.6f},{lon:.6f},available,,true"
        )
    return "\n".join(lines) + "\n"


async def login(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await client.post("/auth/token", data={"username": email, "password": PASSWORD})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def start_profiles(services: list[ServiceProcess], out_dir: Path) -> list[subprocess.Popen[bytes]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("BENCH_PROFILE: py-spy not installed (pip install py-spy); no profile")
        return []
    out_dir.mkdir(exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(s.process.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--idle",
                "--output",
                str(out_dir / f"profile-{s.name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for s in services
    ]


async def main() -> None:
    # the minimum is 50; quick mode stays there to keep `make bench-quick` short
    count = max(50, int(os.environ.get("BENCH_TTA_EMERGENCIES", "50" if QUICK else "60")))
    member_count = 300 if QUICK else 1000
    settings = MusterSettings()
    run = uuid.uuid4().hex[:8]
    prefix = f"bench{run}."
    schemas = {name: f"bench_{name}_{run}" for name in ("members", "alerts", "dispatch")}
    await provision(settings.kafka_bootstrap_servers, all_topics(prefix))
    twilio = FakeTwilio().start()
    members_port, alerts_port = free_port(), free_port()
    jwks_url = f"http://127.0.0.1:{members_port}/.well-known/jwks.json"
    base = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MUSTER_TOPIC_PREFIX": prefix,
        "MUSTER_LOG_LEVEL": os.environ.get("MUSTER_LOG_LEVEL", "WARNING"),
    }
    envs = {
        name: {
            **base,
            "MUSTER_DB_SCHEMA": schema,
            "MUSTER_GROUP_ID": f"bench-{run}-{name}",
            "MUSTER_REDIS_PREFIX": f"{prefix}{name}.",
        }
        for name, schema in schemas.items()
    }
    envs["members"] |= {
        "MUSTER_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "MUSTER_BOOTSTRAP_ADMIN_PASSWORD": PASSWORD,
    }
    envs["alerts"] |= {
        **twilio.env(),
        "MUSTER_PUBLIC_BASE_URL": f"http://127.0.0.1:{alerts_port}",
        "MUSTER_JWKS_URL": jwks_url,
        "ALERTS_SMS_RATE_PER_S": "100000",
    }
    envs["dispatch"] |= {
        "MUSTER_JWKS_URL": jwks_url,
        # one wave per emergency: no escalation during the run, no approval step
        "DISPATCH_ESCALATION_DELAY_S": "3600",
        "DISPATCH_ESCALATION_DELAY_EXTREME_S": "3600",
        "DISPATCH_APPROVAL_MEMBERS": "1000000",
    }
    logs = Path(tempfile.mkdtemp(prefix="bench-tta-"))
    engine = create_async_engine(settings.database_url, pool_size=1)
    client = redis.Redis.from_url(settings.redis_url)
    started: list[ServiceProcess] = []
    profilers: list[subprocess.Popen[bytes]] = []
    try:
        async with engine.begin() as conn:
            for schema in schemas.values():
                await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await asyncio.gather(
            *(asyncio.to_thread(run_migrations, name, env) for name, env in envs.items())
        )
        started.append(start_service("members", envs["members"], logs, port=members_port))
        started.append(start_service("alerts", envs["alerts"], logs, port=alerts_port))
        started.append(start_service("dispatch", envs["dispatch"], logs))
        members, _alerts, dispatch = started
        async with (
            httpx.AsyncClient(base_url=members.url, timeout=120) as members_http,
            httpx.AsyncClient(base_url=dispatch.url, timeout=60) as dispatch_http,
        ):
            admin = await login(members_http, ADMIN_EMAIL)
            section = {"code": SECTION, "name": "Bench", "country": "AL",
                       "timezone": "Europe/Tirane", "language": "sq"}  # fmt: skip
            (await members_http.post("/sections", json=section, headers=admin)).raise_for_status()
            account = {"email": COORDINATOR_EMAIL, "password": PASSWORD, "role": "coordinator",
                       "sections": [SECTION]}  # fmt: skip
            (await members_http.post("/accounts", json=account, headers=admin)).raise_for_status()
            coordinator = await login(members_http, COORDINATOR_EMAIL)
            rng = random.Random(11)
            imported = await members_http.post(
                "/members/import",
                content=members_csv(member_count, rng).encode(),
                headers={**coordinator, "Content-Type": "text/csv"},
            )
            imported.raise_for_status()
            index_pattern = f"{prefix}alerts.alerts:member:*"
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                indexed = len([k async for k in client.scan_iter(match=index_pattern, count=2000)])
                if indexed >= member_count:
                    break
                await asyncio.sleep(0.5)
            print(f"{member_count} members imported and indexed; declaring {count} emergencies",
                  flush=True)  # fmt: skip
            if os.environ.get("BENCH_PROFILE"):
                profilers = start_profiles(started[1:], Path(__file__).parent / "results")
                await asyncio.sleep(2.0)  # py-spy attaches
            samples: list[float] = []
            for i in range(count + 2):  # the first two warm the path up, untimed
                title = f"TTA {run} {i:03d}"
                body = {
                    "section": SECTION, "title": title, "severity": "Severe",
                    "urgency": "Immediate", "category": "Rescue",
                    "area": {"lat": CENTRE[0] + rng.uniform(-0.01, 0.01),
                             "lon": CENTRE[1] + rng.uniform(-0.01, 0.01), "radius_m": 3000},
                    "required_qualifications": ["FIRST_AID"],
                    "members_needed": 1 + i % 5,
                }  # fmt: skip
                seen = len(twilio.messages)
                declared = await dispatch_http.post("/emergencies", json=body, headers=coordinator)
                answered_at = time.monotonic()
                if declared.status_code != 201:
                    raise SystemExit(f"POST /emergencies: {declared.status_code} {declared.text}")
                first = None
                wait_until = answered_at + 30
                while first is None and time.monotonic() < wait_until:
                    for sms in list(twilio.messages)[seen:]:
                        if title in sms.body:
                            first = sms.at
                            break
                    else:
                        await asyncio.sleep(0.001)
                if first is None:
                    raise SystemExit(f"no SMS for emergency {i} within 30 s: see {logs}")
                if i >= 2:
                    samples.append((first - answered_at) * 1000)
                # let the rest of this wave go out, so waves do not overlap
                await asyncio.sleep(0.3)
    finally:
        for profiler in profilers:
            profiler.send_signal(2)  # SIGINT: py-spy writes what it recorded
            with_timeout = profiler.wait(timeout=60)
            del with_timeout
        for service in reversed(started):
            service.stop(20)
        twilio.stop()
        async with engine.begin() as conn:
            for schema in schemas.values():
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=5000)]
        for start in range(0, len(keys), 5000):
            await client.delete(*keys[start : start + 5000])
        await client.aclose()
    p50, p95, p99 = (
        statistics.median(samples), percentile(samples, 0.95), percentile(samples, 0.99)
    )  # fmt: skip
    print(
        f"time to alert, {len(samples)} emergencies (members_needed 1-5) declared one after "
        f"another: response -> first SMS p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, "
        f"max {max(samples):.1f} ms"
    )
    results.figure(MODULE, "POST /emergencies -> first SMS p50", p50, "ms", better="lower",
                   floor="kafka_rtt_p50")  # fmt: skip
    results.figure(MODULE, "POST /emergencies -> first SMS p95", p95, "ms", better="lower",
                   floor="kafka_rtt_p99", goal=50)  # fmt: skip
    results.figure(MODULE, "POST /emergencies -> first SMS p99", p99, "ms", better="lower",
                   floor="kafka_rtt_p99", goal=50)  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
