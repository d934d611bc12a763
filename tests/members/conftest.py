"""One members service process per test module (real PostgreSQL schema and Kafka topics
of its own), with a bootstrap admin; tests create what they need through its API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.provision import provision
from shared.events.topics import all_topics
from tests.conftest import TEST_PARTITIONS
from tests.support.infra import Infra
from tests.support.kafka import delete_topics
from tests.support.processes import ServiceProcess, run_migrations, start_service

ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "correct horse battery staple"


@dataclass
class MembersUnderTest:
    process: ServiceProcess
    schema: str
    topic_prefix: str
    bootstrap: str
    env: dict[str, str]
    admin_token: str

    @property
    def url(self) -> str:
        return self.process.url

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60)

    def admin(self) -> httpx.AsyncClient:
        return self.client(self.admin_token)


async def login(url: str, email: str, password: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/auth/token", data={"username": email, "password": password})
        response.raise_for_status()
        return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("members")


@pytest.fixture(scope="module")
async def members_service(
    request: pytest.FixtureRequest, infra: Infra, admin_engine: AsyncEngine, module_tmp: Path
) -> AsyncIterator[MembersUnderTest]:
    """A test module may set `MEMBERS_ENV = {...}` to start its process with more
    variables (limits made small enough to reach in a test)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    prefix = f"t{uuid.uuid4().hex[:10]}."
    specs = all_topics(prefix, max_partitions=TEST_PARTITIONS)
    await provision(infra.kafka_bootstrap, specs)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "DATABASE_URL": infra.database_url,
        "REDIS_URL": infra.redis_url,
        "MUSTER_TOPIC_PREFIX": prefix,
        "MUSTER_DB_SCHEMA": schema,
        "MUSTER_GROUP_ID": f"g{uuid.uuid4().hex[:10]}",
        "MUSTER_REDIS_PREFIX": prefix,
        "MUSTER_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "MUSTER_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MUSTER_LOCATION_MIN_MOVE_M": "100",
        "MUSTER_LOCATION_REFRESH_S": "300",
        **getattr(request.module, "MEMBERS_ENV", {}),
    }
    run_migrations("members", env)
    process = start_service("members", env, module_tmp)
    try:
        token = await login(process.url, ADMIN_EMAIL, ADMIN_PASSWORD)
        yield MembersUnderTest(process, schema, prefix, infra.kafka_bootstrap, env, token)
    finally:
        process.stop()
        async with admin_engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await delete_topics(infra.kafka_bootstrap, [spec.name for spec in specs])


def unique_section() -> str:
    return "S" + uuid.uuid4().hex[:6].upper()


_counter = iter(range(10_000_000))


_PHONE_BASE = uuid.uuid4().int % 5_000_000


def unique_phone() -> str:
    """A valid, unused French mobile number (+33 6 ...)."""
    # a random base per test process, then consecutive numbers: never twice in one run
    return f"+3361{(_PHONE_BASE + next(_counter)) % 10_000_000:07d}"


async def make_section(client: httpx.AsyncClient, code: str | None = None, **extra: str) -> str:
    code = code or unique_section()
    body = {
        "code": code,
        "name": f"Section {code}",
        "country": "FR",
        "timezone": "Europe/Paris",
        "language": "fr",
        **extra,
    }
    response = await client.post("/sections", json=body)
    assert response.status_code in (201, 409), response.text
    return code


def member_body(section: str, /, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "section": section,
        "full_name": "Arta Hoxha",
        "phone": unique_phone(),
        "email": "arta@example.org",
        "language": "sq",
        "qualifications": [{"code": "FIRST_AID", "expires_at": "2099-05-01"}],
        "location": {"lat": 40.7239, "lon": 19.5561},
        "availability": "available",
        "quiet_hours": {"start": "23:00", "end": "06:30"},
        "consent": {"alerts": True},
    }
    body.update(extra)
    return body


async def snapshots_of(
    svc: MembersUnderTest, member_id: str, count: int, *, settle_s: float = 1.0
) -> list[dict[str, object]]:
    """The member's snapshots as a real consumer reads them from Kafka, in offset order
    (its partition's order): wait for `count`, then a little longer to see extras."""
    from shared.events.envelope import decode
    from shared.events.topics import MEMBERS_STATE
    from tests.support.kafka import read_records

    key = member_id.encode()

    def mine(records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        return [r for r in records if r.key == key and r.value is not None]

    topic = [svc.topic(MEMBERS_STATE)]
    await read_records(svc.bootstrap, topic, until=lambda rs: len(mine(rs)) >= count)
    await asyncio.sleep(settle_s)
    records = await read_records(
        svc.bootstrap, topic, until=lambda rs: len(mine(rs)) > count, timeout_s=settle_s + 2
    )
    envelopes = [decode(r.value, r.headers, r.key) for r in mine(records)]
    assert {e.type for e in envelopes} <= {"muster.member.changed.v1"}
    assert all(e.subject == member_id and e.source == "muster.members" for e in envelopes)
    return [e.data for e in envelopes]
