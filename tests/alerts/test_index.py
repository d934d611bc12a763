"""The Redis targeting index: versioned, idempotent upserts, tombstones, and rebuilding
from the compacted topic (by command, and by the service after Redis lost its data)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import redis.asyncio as redis

from services.alerts.index import SearchArea, TargetingIndex
from services.alerts.settings import Settings
from shared.events.envelope import KafkaRecord
from tests.alerts.fake_twilio import FakeTwilio
from tests.alerts.members import (
    CENTRE,
    EMERGENCIES,
    MEMBERS_STATE,
    declared,
    member,
    publish_emergency_event,
    publish_members,
    wait_indexed,
)
from tests.conftest import Topics
from tests.support.infra import REPO
from tests.support.kafka import publish
from tests.support.processes import start_service

NEAR = SearchArea(CENTRE[0], CENTRE[1], 5000)


def index_for(
    client: redis.Redis, prefix: str, bootstrap: str = "127.0.0.1:9092"
) -> TargetingIndex:
    settings = Settings(redis_prefix=prefix, topic_prefix=prefix, kafka_bootstrap_servers=bootstrap)
    return TargetingIndex(client, settings)


async def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """What a FLUSHALL does to this test's keys (the Redis is shared with other tests)."""
    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    return len(keys)


async def test_upserts_are_idempotent_by_version_and_tombstones_stick(
    redis_client: redis.Redis, topics: Topics
) -> None:
    index = index_for(redis_client, topics.prefix)
    v1 = member(version=1)
    v2 = v1.model_copy(update={"version": 2, "section": "IT", "language": "it"})
    assert await index.upsert(v2)
    assert not await index.upsert(v1)  # late, older: ignored
    assert not await index.upsert(v2)  # again: nothing changes
    found = await index.candidates(["IT"], NEAR)
    assert [m.version for m in found] == [2]
    assert await index.candidates(["AL"], NEAR) == []  # moved out of the old section's set
    await index.delete(str(v1.member_id))
    assert await index.candidates(["IT"], NEAR) == []
    v3 = v1.model_copy(update={"version": 3})
    assert not await index.upsert(v3)  # an erased member never comes back
    await delete_prefix(redis_client, topics.prefix)


async def test_rebuild_index_command_reads_the_compacted_topic(
    redis_client: redis.Redis, topics: Topics, service_env: dict[str, str]
) -> None:
    kept, erased = member(version=1), member(version=1)
    newer = kept.model_copy(update={"version": 5, "language": "fr"})
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [kept, erased, newer, kept])
    await publish(
        topics.bootstrap,
        topics(MEMBERS_STATE),
        [KafkaRecord(key=str(erased.member_id).encode(), value=None)],
    )
    result = subprocess.run(
        [sys.executable, "-m", "services.alerts", "rebuild-index"],
        cwd=REPO,
        env={**os.environ, **service_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    index = index_for(redis_client, topics.prefix, topics.bootstrap)
    found = await index.candidates(["AL"], NEAR)
    assert [(m.member_id, m.version, m.language) for m in found] == [(kept.member_id, 5, "fr")]
    assert await index.is_ready()
    await delete_prefix(redis_client, topics.prefix)


async def test_redis_flushed_while_running_is_rebuilt_before_the_next_alert(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    near = [member(lat=CENTRE[0] + i * 0.001) for i in range(20)]
    expelled = member(status="expelled")
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [*near, expelled])
    service = start_service("alerts", alerts_env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, [*near, expelled])
        assert await delete_prefix(redis_client, topics.prefix) > 20
        await publish_emergency_event(
            topics.bootstrap, topics(EMERGENCIES), declared(radius_m=5000, members_needed=3)
        )
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 9, 60)
        await asyncio.sleep(1.0)
        assert sorted(s.to for s in twilio.messages) == sorted(m.phone for m in near[:9])
        async with httpx.AsyncClient(base_url=service.url) as client:
            metrics = (await client.get("/metrics")).text
        assert "muster_alerts_index_rebuilds_total 2.0" in metrics  # at start, after the flush
    finally:
        service.stop()
        await delete_prefix(redis_client, topics.prefix)
