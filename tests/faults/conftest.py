"""The platform the fault tests break: members, alerts and dispatch as real processes on
Kafka, PostgreSQL and Redis of the suite's own (tests/support/private_infra.py), so
stopping a broker never touches the servers every other test shares.

Sizes and time. Each test puts an emergency of 2,000 selected members in flight, the size
the issue names. One set of private servers and one platform (the three services, a
Twilio-compatible server, an admin and a coordinator signed in) serve the whole suite:
on a 2-core machine a broker's JVM takes 10-25 s to start and the three services with
their migrations 20-50 s, so starting them once per test would cost more than every
fault together. Tests stay independent by place: each seeds its own 2,000 members
around a centre of its own, 50 km from the others' (3 km radius, no escalation), so an
emergency reaches only its test's members; each counts only its own members' SMS.
Before each test, `fault_platform` starts again any server or service an earlier test
left stopped or dead, so one failure does not cascade.

The platform's settings serve every test at once (`PLATFORM_ENV`, `ALERTS_ENV`,
`DISPATCH_ENV`): a fan-out at 250 SMS/s (about 8 s for 2,000, so faults land in its
middle), dead senders taken over after 3 s, outages retried at most 2 s apart (30 s in
production), and token signing keys refreshed every second with a 20 s stale bound (5
minutes and 24 hours in production) so that "members down for 10 minutes" fits in
seconds.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from twilio.request_validator import RequestValidator

from shared.events.catalog import make_envelope
from shared.events.envelope import Envelope, decode, encode
from shared.events.members import MemberChanged
from shared.events.provision import provision
from shared.events.topics import ALERTS, MEMBERS_STATE, RESPONSES, TopicSpec, all_topics
from tests.alerts.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, Sms
from tests.alerts.members import CENTRE, member
from tests.support.private_infra import PrivateInfra, private_infra
from tests.support.processes import ServiceProcess, free_port, run_migrations, start_service

T = TypeVar("T")

ADMIN_EMAIL = "admin@faults.example.org"
ADMIN_PASSWORD = "fault suite admin password, long enough"
COORDINATOR_EMAIL = "coordinator.al@faults.example.org"
COORDINATOR_PASSWORD = "fault suite coordinator password, long"
SECTION = "AL"
MUSTER_NUMBER = "+15005550006"

#: the emergency every fault test puts in flight: 2,000 selected members (first wave =
#: members_needed × ALERTS_OVER_ALERT_FACTOR 3, capped by the 2,000 eligible members)
SELECTED = 2000
MEMBERS_NEEDED = 667
RADIUS_M = 3000
#: partitions of each of the suite's topics (as the other flow tests use)
TOPIC_PARTITIONS = 3
#: how long alerts and dispatch keep trusting cached signing keys with members down
JWKS_STALE_MAX_S = 20

#: what every fault test's services share: fast enough to stay bounded on 2 cores, slow
#: enough that a fault lands in the middle of a fan-out
PLATFORM_ENV = {
    "MUSTER_LOG_LEVEL": "INFO",
    "MUSTER_OUTBOX_POLL_INTERVAL_S": "0.05",
    # outages are waited out without limit; the longest pause between attempts is cut
    # from 30 s so that recovery is seen within the tests' bounds
    "MUSTER_CONSUMER_TRANSIENT_RETRY_MAX_S": "2",
    # members down: alerts and dispatch try to refresh the keys every second, and stop
    # trusting them 20 s after the last successful fetch (test_members_down.py)
    "MUSTER_JWKS_REFRESH_INTERVAL_S": "1",
    "MUSTER_JWKS_MIN_FETCH_INTERVAL_S": "1",
    "MUSTER_JWKS_STALE_MAX_S": str(JWKS_STALE_MAX_S),
}
ALERTS_ENV = {
    "ALERTS_SMS_RATE_PER_S": "250",  # a 2,000-member fan-out lasts about 8 s
    "ALERTS_SMS_RETRY_BASE_S": "0.05",
    "ALERTS_SENDER_DEAD_AFTER_S": "3",
    # widen "the provider accepted, the row is not marked sent yet" so a SIGKILL is sure
    # to leave messages in it (the window a real crash can hit)
    "ALERTS_FAULT_PAUSE_AFTER_SEND_S": "0.1",
}
DISPATCH_ENV = {
    # a 2,000-member first wave is above the two-person threshold (500): the suite
    # breaks infrastructure, not that rule
    "DISPATCH_APPROVAL_MEMBERS": "100000",
    # no second wave during a test: it would reach members the test does not expect
    "DISPATCH_ESCALATION_DELAY_S": "3600",
    "DISPATCH_ESCALATION_DELAY_EXTREME_S": "3600",
    "DISPATCH_SUMMARY_MIN_INTERVAL_S": "0.5",
    "DISPATCH_SCHEDULER_POLL_S": "0.5",
}


@pytest.fixture(scope="session")
def private() -> Iterator[PrivateInfra]:
    with private_infra() as servers:
        yield servers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class FaultPlatform:
    servers: PrivateInfra
    prefix: str
    envs: dict[str, dict[str, str]]
    twilio: FakeTwilio
    public_base: str
    log_dir: Path
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    admin: dict[str, str] = field(default_factory=dict)
    coordinator: dict[str, str] = field(default_factory=dict)
    #: areas handed out so far (each test's members and emergencies are in its own)
    areas: int = 0
    #: when the current test was handed the platform (for `step`)
    started_at: float = field(default_factory=time.monotonic)

    def step(self, what: str) -> None:
        """Print how far the test got and when (shown with a failure, or with -s): on a
        shared 2-core machine, where the time goes is the first question."""
        print(f"[{time.monotonic() - self.started_at:6.1f} s] {what}", flush=True)

    def new_area(self) -> tuple[float, float]:
        """A centre about 50 km north of every earlier test's: its members are nobody
        else's, and nobody else's are in it."""
        self.areas += 1
        return (CENTRE[0] + 0.45 * self.areas, CENTRE[1])

    # --- processes ---------------------------------------------------------------------

    @property
    def members(self) -> ServiceProcess:
        return self.services["members"]

    @property
    def alerts(self) -> ServiceProcess:
        return self.services["alerts"]

    @property
    def dispatch(self) -> ServiceProcess:
        return self.services["dispatch"]

    async def start(self, name: str, port: int | None = None) -> ServiceProcess:
        """Start (or start again, on the same port: the JWKS URL and the public base of
        the SMS links name it) one service."""
        previous = self.services.get(name)
        chosen = port or (previous.port if previous else None)
        service = await asyncio.to_thread(
            start_service, name, self.envs[name], self.log_dir, port=chosen, ready_timeout_s=120
        )
        self.services[name] = service
        return service

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def topic_specs(self) -> list[TopicSpec]:
        return all_topics(self.prefix, max_partitions=TOPIC_PARTITIONS)

    def logs(self, *names: str, tail: int = 3000) -> str:
        chosen = names or tuple(self.services)
        return "\n".join(
            f"----- {n} log (last {tail} chars) -----\n{self.services[n].log()[-tail:]}"
            for n in chosen
            if n in self.services
        )

    async def eventually(
        self,
        probe: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        what: str,
        *,
        timeout_s: float,
        every_s: float = 0.5,
    ) -> T:
        """Poll until `done(probe())` (bounded); fail with the last value and the logs."""
        deadline = time.monotonic() + timeout_s
        while True:
            last = await probe()
            if done(last):
                return last
            if time.monotonic() > deadline:
                shown = repr(last)[:1500]
                raise AssertionError(
                    f"{what}: not so after {timeout_s:.0f} s; last seen: {shown}\n{self.logs()}"
                )
            await asyncio.sleep(every_s)

    # --- members, emergencies, answers ---------------------------------------------------

    async def seed_members(
        self, count: int, centre: tuple[float, float], *, section: str = SECTION
    ) -> list[MemberChanged]:
        """`count` eligible members within 2.5 km of `centre`, published as snapshots
        straight to the members topic (as members would publish them), and indexed."""
        seeded = []
        for i in range(count):
            # a spiral: distinct distances, every one inside RADIUS_M
            angle, reach = i * 2.399963, 2500.0 * ((i + 1) / count) ** 0.5
            seeded.append(
                member(
                    lat=centre[0] + reach * math.sin(angle) / 111_195.0,
                    lon=centre[1] + reach * math.cos(angle) / 84_300.0,
                    section=section,
                    qualifications=[("FIRST_AID", date(2031, 1, 1))],
                )
            )
        await publish_fast(
            self.servers.kafka.bootstrap,
            self.topic(MEMBERS_STATE),
            [make_envelope(m, source="muster.members") for m in seeded],
        )
        await self.wait_indexed(seeded)
        return seeded

    async def wait_indexed(self, seeded: Sequence[MemberChanged], timeout_s: float = 90) -> None:
        client = redis.Redis.from_url(self.servers.redis.url)
        prefix = self.envs["alerts"]["MUSTER_REDIS_PREFIX"]
        try:

            async def missing() -> int:
                pipe = client.pipeline(transaction=False)
                for m in seeded:
                    pipe.hget(f"{prefix}alerts:member:{m.member_id}", "v")
                return sum(v is None for v in await pipe.execute())

            await self.eventually(missing, lambda n: n == 0, "members indexed", timeout_s=timeout_s)
        finally:
            await client.aclose()

    async def declare(
        self,
        centre: tuple[float, float],
        *,
        title: str,
        members_needed: int = MEMBERS_NEEDED,
        radius_m: int = RADIUS_M,
    ) -> dict[str, Any]:
        body = {
            "section": SECTION,
            "title": title,
            "category": "Rescue",
            "severity": "Severe",
            "urgency": "Immediate",
            "area": {"lat": centre[0], "lon": centre[1], "radius_m": radius_m},
            "required_qualifications": ["FIRST_AID"],
            "members_needed": members_needed,
        }
        async with httpx.AsyncClient(base_url=self.dispatch.url, timeout=30) as client:
            response = await client.post("/emergencies", json=body, headers=self.coordinator)
        assert response.status_code == 201, f"declare: {response.status_code} {response.text}"
        declared: dict[str, Any] = response.json()
        assert declared["status"] == "active", declared
        return declared

    def alert_sms(self, seeded: Iterable[MemberChanged]) -> dict[str, list[Sms]]:
        """Every SMS each of `seeded` received (the suite's emergencies send one kind:
        the alert; nobody answers in the tests that count them)."""
        phones: dict[str, list[Sms]] = {m.phone: [] for m in seeded if m.phone}
        for sms in list(self.twilio.messages):
            if sms.to in phones:
                phones[sms.to].append(sms)
        return phones

    def signed_reply(self, phone: str, body: str) -> tuple[dict[str, str], dict[str, str]]:
        """The form and headers of Twilio's signed webhook for an SMS reply."""
        params = {
            "From": phone,
            "To": MUSTER_NUMBER,
            "Body": body,
            "MessageSid": f"SM{uuid.uuid4().hex}",
            "AccountSid": ACCOUNT_SID,
        }
        signature = RequestValidator(AUTH_TOKEN).compute_signature(
            self.public_base + "/sms/inbound", params
        )
        return params, {"X-Twilio-Signature": signature}

    async def board(self, emergency_id: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.dispatch.url, timeout=30) as client:
            response = await client.get(
                f"/emergencies/{emergency_id}/board", headers=self.coordinator
            )
        assert response.status_code == 200, f"board: {response.status_code} {response.text}"
        rows: list[dict[str, Any]] = response.json()["rows"]
        return rows

    async def summary(self, emergency_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.dispatch.url, timeout=30) as client:
            response = await client.get(
                f"/emergencies/{emergency_id}/summary", headers=self.coordinator
            )
        assert response.status_code == 200, f"summary: {response.status_code} {response.text}"
        result: dict[str, Any] = response.json()
        return result

    async def consumer_lag(self) -> int:
        """Records on the suite's topics that its consumer groups have not committed."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.servers.kafka.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.servers.kafka.bootstrap)
        await admin.start()
        await consumer.start()
        try:
            lag = 0
            for group, _ in await admin.list_consumer_groups():
                committed = await admin.list_consumer_group_offsets(group)
                mine = [tp for tp in committed if tp.topic.startswith(self.prefix)]
                if not mine:
                    continue
                ends = await consumer.end_offsets(mine)
                lag += sum(max(0, ends[tp] - committed[tp].offset) for tp in mine)
            return lag
        finally:
            await consumer.stop()
            await admin.close()

    async def events(self, *topics: str, emergency_id: str) -> list[Envelope]:
        """Every event of `emergency_id` on `topics` (contract names) as it is now: read
        from the start to the end offsets the topics have when this is called."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers.kafka.bootstrap,
            enable_auto_commit=False,
            request_timeout_ms=30_000,
        )
        await consumer.start()
        found: list[Envelope] = []
        key = emergency_id.encode()
        try:
            counts = {spec.name: spec.partitions for spec in self.topic_specs()}
            partitions = [
                TopicPartition(self.topic(t), n)
                for t in topics
                for n in range(counts[self.topic(t)])
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            deadline = time.monotonic() + 60

            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in partitions])

            while await behind():
                assert time.monotonic() < deadline, "reading the topics took over 60 s"
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batch.values():
                    found.extend(
                        decode(r.value, r.headers, r.key)
                        for r in records
                        if r.key == key and r.value is not None
                    )
        finally:
            await consumer.stop()
        return found


async def publish_fast(bootstrap: str, topic: str, envelopes: Sequence[Envelope]) -> None:
    """Publish many events at once (batched by the producer, order kept per key), acked."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20
    )
    await producer.start()
    try:
        pending = []
        for envelope in envelopes:
            record = encode(envelope)
            pending.append(
                await producer.send(
                    topic, value=record.value, key=record.key, headers=list(record.headers)
                )
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def metric(service: ServiceProcess, name: str) -> float:
    """A counter or gauge from the service's /metrics (summed over its labels)."""
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        text_ = (await client.get("/metrics")).text
    pattern = rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$"
    return sum(float(v) for v in re.findall(pattern, text_, re.M))


@pytest.fixture(scope="session")
async def shared_platform(
    private: PrivateInfra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FaultPlatform]:
    """Members, alerts and dispatch on the private servers, an admin and a coordinator of
    section AL signed in; one for the whole suite (see the module docstring)."""
    run = uuid.uuid4().hex[:8]
    prefix = f"f{run}."
    schemas = {name: f"faults_{name}_{run}" for name in ("members", "alerts", "dispatch")}
    infra = private.infra()
    members_port, alerts_port = free_port(), free_port()
    jwks_url = f"http://127.0.0.1:{members_port}/.well-known/jwks.json"
    public_base = f"http://127.0.0.1:{alerts_port}"
    twilio = FakeTwilio().start()
    envs = {
        name: {
            "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
            "DATABASE_URL": infra.database_url,
            "REDIS_URL": infra.redis_url,
            "MUSTER_TOPIC_PREFIX": prefix,
            "MUSTER_DB_SCHEMA": schema,
            "MUSTER_GROUP_ID": f"faults-{run}-{name}",
            "MUSTER_REDIS_PREFIX": f"{prefix}{name}.",
            "MUSTER_JWKS_URL": jwks_url,
            **PLATFORM_ENV,
        }
        for name, schema in schemas.items()
    }
    envs["members"] |= {
        "MUSTER_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "MUSTER_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    envs["alerts"] |= {**twilio.env(), "MUSTER_PUBLIC_BASE_URL": public_base, **ALERTS_ENV}
    envs["dispatch"] |= DISPATCH_ENV
    engine = create_async_engine(infra.database_url, pool_size=1)
    async with engine.begin() as conn:
        for schema in schemas.values():
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    await engine.dispose()
    await provision(infra.kafka_bootstrap, all_topics(prefix, max_partitions=TOPIC_PARTITIONS))
    log_dir = tmp_path_factory.mktemp("faults")
    platform = FaultPlatform(private, prefix, envs, twilio, public_base, log_dir)
    try:
        await asyncio.gather(
            *(asyncio.to_thread(run_migrations, name, env) for name, env in envs.items())
        )
        await platform.start("members", members_port)
        await asyncio.gather(platform.start("alerts", alerts_port), platform.start("dispatch"))
        async with httpx.AsyncClient(base_url=platform.members.url, timeout=30) as client:
            platform.admin = bearer(await _login(client, ADMIN_EMAIL, ADMIN_PASSWORD))
            section = {"code": SECTION, "name": "Section Albania", "country": "AL",
                       "timezone": "Europe/Tirane", "language": "sq"}  # fmt: skip
            created = await client.post("/sections", json=section, headers=platform.admin)
            assert created.status_code == 201, created.text
            account = {"email": COORDINATOR_EMAIL, "password": COORDINATOR_PASSWORD,
                       "role": "coordinator", "sections": [SECTION]}  # fmt: skip
            created = await client.post("/accounts", json=account, headers=platform.admin)
            assert created.status_code == 201, created.text
            platform.coordinator = bearer(
                await _login(client, COORDINATOR_EMAIL, COORDINATOR_PASSWORD)
            )
        yield platform
    finally:
        await asyncio.gather(
            *(asyncio.to_thread(s.stop, 20) for s in platform.services.values()),
            return_exceptions=True,
        )
        twilio.stop()
        # the private servers, with every schema and topic, go away with the session


@pytest.fixture
async def fault_platform(shared_platform: FaultPlatform) -> FaultPlatform:
    """The suite's platform, whole again: servers running, every service alive and ready
    (an earlier test that failed half-way may have left one stopped)."""
    p = shared_platform
    await asyncio.to_thread(p.servers.ensure_running)
    for name in ("members", "alerts", "dispatch"):
        service = p.services.get(name)
        if service is None or service.process.poll() is not None:
            await p.start(name)

    async def unready() -> list[str]:
        waiting = []
        async with httpx.AsyncClient(timeout=5) as client:
            for service in p.services.values():
                try:
                    ready = (await client.get(f"{service.url}/readyz")).status_code == 200
                except httpx.HTTPError:
                    ready = False
                if not ready:
                    waiting.append(service.name)
        return waiting

    await p.eventually(unready, lambda names: not names, "every service ready", timeout_s=120)
    # what an earlier test left for the consumers (2,000 alert events for dispatch, say)
    # is applied before this one starts: its waits measure its own fault, not a backlog
    await p.eventually(p.consumer_lag, lambda lag: lag == 0, "consumers caught up",
                       timeout_s=600, every_s=2.0)  # fmt: skip
    p.started_at = time.monotonic()
    return p


async def _login(client: httpx.AsyncClient, email: str, password: str) -> str:
    response = await client.post("/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, f"login {email}: {response.status_code} {response.text}"
    return str(response.json()["access_token"])


__all__ = ["ALERTS", "RESPONSES", "FaultPlatform", "metric"]
