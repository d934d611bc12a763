"""Where the tests' real Kafka, PostgreSQL and Redis come from.

In this order: (a) `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` / `REDIS_URL` from the
environment; (b) testcontainers when a Docker engine answers; (c) the project's own
local stack (`deploy/local/stack.sh up --infra`, idempotent: it installs and starts
what is missing and returns at once when all is running).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    database_url: str
    redis_url: str
    source: str


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=10, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def _from_testcontainers() -> Iterator[Infra]:
    # module paths as of testcontainers 4.15
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    with ExitStack() as stack:
        kafka = stack.enter_context(KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft())
        postgres = stack.enter_context(
            PostgresContainer("postgres:15", username="muster", password="muster", dbname="muster")
        )
        redis = stack.enter_context(RedisContainer("redis:7"))
        url = postgres.get_connection_url().replace("postgresql+psycopg2", "postgresql+asyncpg")
        url = url.replace("postgresql://", "postgresql+asyncpg://")
        host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
        yield Infra(kafka.get_bootstrap_server(), url, f"redis://{host}:{port}/0", "testcontainers")


def _start_local_stack() -> Infra:
    script = REPO / "deploy" / "local" / "stack.sh"
    result = subprocess.run(
        ["bash", str(script), "up", "--infra"], cwd=REPO, check=False, timeout=1200
    )
    if result.returncode != 0:
        raise RuntimeError(
            "the local stack did not start: read the output above and the logs in .local/logs"
        )
    env = os.environ
    return Infra(
        f"127.0.0.1:{env.get('KAFKA_PORT', '9092')}",
        f"postgresql+asyncpg://muster@127.0.0.1:{env.get('PGPORT', '5432')}/muster",
        f"redis://127.0.0.1:{env.get('REDIS_PORT', '6379')}/0",
        "local stack",
    )


@contextmanager
def provide_infra() -> Iterator[Infra]:
    env = os.environ
    if env.get("KAFKA_BOOTSTRAP_SERVERS") and env.get("DATABASE_URL") and env.get("REDIS_URL"):
        yield Infra(
            env["KAFKA_BOOTSTRAP_SERVERS"], env["DATABASE_URL"], env["REDIS_URL"], "environment"
        )
    elif _docker_available():
        with _from_testcontainers() as infra:
            yield infra
    else:
        yield _start_local_stack()
