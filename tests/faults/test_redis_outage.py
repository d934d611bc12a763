"""Redis stopped for 10 s during a 2,000-member fan-out; then flushed."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.faults.conftest import SELECTED, FaultPlatform, metric

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DOWN_S = 10.0
#: the members of the emergency declared after the flush
AFTER_FLUSH = 300


async def test_redis_stopped_then_flushed(fault_platform: FaultPlatform) -> None:
    """Redis (alerts' targeting index and SMS rate limit) stops for 10 s when a fifth of
    the members are alerted, and starts again with its data; later it is flushed (a
    failover to an empty replica) before the next emergency.

    Guaranteed: the fan-out waits while Redis is away and resumes by itself: every
    selected member is alerted, extra copies only within the possible-duplicate count;
    after the flush, the next emergency's selection first rebuilds the index from the
    compacted member topic, so it reaches exactly its members.
    What the user sees: the SMS pause for the outage (alerts' /readyz says `redis:
    unavailable`), then go on; after a flush, the next emergency's first SMS leave a
    little later (the rebuild), to the right people.
    """
    p = fault_platform
    centre = p.new_area()
    seeded = await p.seed_members(SELECTED, centre)
    p.step("2,000 members indexed")
    await p.declare(centre, title="Flooding: Redis outage")
    duplicates_before = await metric(p.alerts, "muster_alerts_possible_duplicates_total")

    async def alerted() -> int:
        return sum(1 for sms in p.alert_sms(seeded).values() if sms)

    await p.eventually(alerted, lambda n: n >= SELECTED // 5, "a fifth alerted", timeout_s=90,
                       every_s=0.1)  # fmt: skip
    await asyncio.to_thread(p.servers.redis.stop)
    at_stop = await alerted()
    p.step(f"redis stopped with {at_stop} members alerted")
    async with httpx.AsyncClient(base_url=p.alerts.url, timeout=10) as client:
        ready = await client.get("/readyz")
    await asyncio.sleep(DOWN_S)
    await asyncio.to_thread(p.servers.redis.start)
    p.step("redis started again")
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["redis"].startswith("unavailable"), ready.text
    await p.eventually(alerted, lambda n: n == SELECTED, "every member alerted", timeout_s=180)
    p.step("every member alerted")
    await asyncio.sleep(1.0)
    received = p.alert_sms(seeded)
    extra = sum(len(sms) - 1 for sms in received.values())
    counted = await metric(p.alerts, "muster_alerts_possible_duplicates_total")
    assert at_stop < SELECTED, "the fan-out finished before Redis stopped: nothing tested"
    assert extra <= counted - duplicates_before, f"{extra} duplicates, {counted} counted"

    # a flush: the index is gone; the next selection rebuilds it first
    later = p.new_area()
    newcomers = await p.seed_members(AFTER_FLUSH, later)
    rebuilds = await metric(p.alerts, "muster_alerts_index_rebuilds_total")
    await asyncio.to_thread(p.servers.redis.flushall)
    p.step("redis flushed")
    await p.declare(later, title="Flooding: after the flush", members_needed=AFTER_FLUSH // 3)

    async def newcomers_alerted() -> int:
        return sum(1 for sms in p.alert_sms(newcomers).values() if sms)

    await p.eventually(
        newcomers_alerted, lambda n: n == AFTER_FLUSH, "the next emergency alerted",
        timeout_s=180,
    )  # fmt: skip
    assert await metric(p.alerts, "muster_alerts_index_rebuilds_total") > rebuilds
    await asyncio.sleep(1.0)
    assert all(len(sms) == 1 for sms in p.alert_sms(newcomers).values())
    # nobody of the first emergency was alerted again by the second
    assert sum(len(sms) for sms in p.alert_sms(seeded).values()) == SELECTED + extra
