"""Fixtures: real Kafka, PostgreSQL and Redis for the whole session, isolated per test.

Each test that asks for `topics` gets its own topic prefix (fresh topics, fresh groups);
each that asks for `schema` gets its own PostgreSQL schema, dropped afterwards; `redis_db`
flushes a Redis database reserved for tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.events.provision import provision
from shared.events.topics import all_topics
from tests.support.infra import Infra, provide_infra
from tests.support.kafka import delete_topics


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with provide_infra() as provided:
        yield provided


@dataclass(frozen=True)
class Topics:
    """Fresh, prefixed copies of Muster's topics (and their .dlq) for one test."""

    prefix: str
    bootstrap: str

    def __call__(self, name: str) -> str:
        return f"{self.prefix}{name}"


#: enough partitions for two consumers of one group to share a topic, few enough that a
#: whole run's throwaway topics stay light for a single small broker
TEST_PARTITIONS = 3


@pytest.fixture
async def topics(infra: Infra) -> AsyncIterator[Topics]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    specs = all_topics(prefix, max_partitions=TEST_PARTITIONS)
    await provision(infra.kafka_bootstrap, specs)
    yield Topics(prefix, infra.kafka_bootstrap)
    await delete_topics(infra.kafka_bootstrap, [spec.name for spec in specs])


@pytest.fixture
def schema_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
async def admin_engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(infra.database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def schema(admin_engine: AsyncEngine, schema_name: str) -> AsyncIterator[str]:
    """An empty schema of the test's own; dropped with everything in it afterwards."""
    async with admin_engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema_name}"'))
    yield schema_name
    async with admin_engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE'))


@pytest.fixture
async def redis_client(infra: Infra) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(infra.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def service_env(infra: Infra, topics: Topics, schema: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a service process under test: this test's topics and schema."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "DATABASE_URL": infra.database_url,
        "REDIS_URL": infra.redis_url,
        "MUSTER_TOPIC_PREFIX": topics.prefix,
        "MUSTER_DB_SCHEMA": schema,
        "MUSTER_GROUP_ID": f"g{uuid.uuid4().hex[:10]}",
        "MUSTER_REDIS_PREFIX": f"{topics.prefix}",
        "MUSTER_LOG_LEVEL": "INFO",
    }
