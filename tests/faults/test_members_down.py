"""The members service down: staff keep working on alerts and dispatch, for a bounded time."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.faults.conftest import JWKS_STALE_MAX_S, SECTION, SELECTED, FaultPlatform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: the cached keys are refreshed every second (MUSTER_JWKS_REFRESH_INTERVAL_S=1), so
#: these seconds of outage hold as many failed refreshes as 10 minutes × 5 at the
#: production interval of 5 minutes would (two per 10 minutes)
WORKING_S = JWKS_STALE_MAX_S - 6


async def test_members_down_staff_keep_working(fault_platform: FaultPlatform) -> None:
    """Members (which signs staff tokens and publishes their keys) is stopped; alerts and
    dispatch keep verifying tokens with the keys they cached.

    Guaranteed: while members is down, staff tokens keep working on dispatch and alerts
    (read the emergencies, declare one, preview its reach; the 2,000-member fan-out runs
    without members), however often refreshing the keys fails, for
    MUSTER_JWKS_STALE_MAX_S after the last successful fetch (24 h in production; 20 s
    here); past that bound tokens are refused (401), so a key withdrawn while members
    was away is not trusted for ever; when members is back, the same tokens work again.
    What the user sees: nothing, while members is down (only the members pages and
    signing in fail); after the bound, a 401 naming the signing keys, until members is
    back (the same token then works again).
    """
    p = fault_platform
    centre = p.new_area()
    seeded = await p.seed_members(SELECTED, centre)
    p.step("2,000 members indexed")
    preview = {
        "section": SECTION, "severity": "Severe", "members_needed": 10,
        "area": {"lat": centre[0], "lon": centre[1], "radius_m": 3000},
        "required_qualifications": ["FIRST_AID"],
    }  # fmt: skip

    async with httpx.AsyncClient(timeout=30) as client:

        async def staff_work() -> tuple[int, int]:
            listed = await client.get(f"{p.dispatch.url}/emergencies", headers=p.coordinator)
            reach = await client.post(
                f"{p.alerts.url}/reach/preview", json=preview, headers=p.coordinator
            )
            return listed.status_code, reach.status_code

        # fresh keys in both services just before members goes away
        assert await staff_work() == (200, 200)
        await asyncio.sleep(1.2)
        assert await staff_work() == (200, 200)  # starts a background refresh
        await asyncio.sleep(0.5)
        await asyncio.to_thread(p.members.stop)
        down_at = time.monotonic()
        p.step("members stopped")

        declared = await p.declare(centre, title="Flooding: members down")
        outcomes = []
        while time.monotonic() - down_at < WORKING_S:
            outcomes.append(await staff_work())
            await asyncio.sleep(1.0)
        p.step(f"{len(outcomes)} rounds of staff work with members down")
        assert outcomes and all(o == (200, 200) for o in outcomes), outcomes
        async with httpx.AsyncClient(base_url=p.dispatch.url, timeout=30) as dispatch:
            board = await dispatch.get(f"/emergencies/{declared['id']}", headers=p.coordinator)
        assert board.status_code == 200

        # the fan-out never needed members
        async def alerted() -> int:
            return sum(1 for sms in p.alert_sms(seeded).values() if sms)

        # past the bound: refused until members answers again
        await asyncio.sleep(max(0.0, JWKS_STALE_MAX_S + 2 - (time.monotonic() - down_at)))
        listed = await client.get(f"{p.dispatch.url}/emergencies", headers=p.coordinator)
        reach = await client.post(
            f"{p.alerts.url}/reach/preview", json=preview, headers=p.coordinator
        )
        assert (listed.status_code, reach.status_code) == (401, 401), (listed.text, reach.text)
        assert "signing keys" in listed.json()["detail"], listed.text
        p.step("tokens refused past the stale bound")

        await p.start("members")
        await p.eventually(staff_work, lambda o: o == (200, 200), "tokens work again",
                           timeout_s=60)  # fmt: skip
        p.step("members back: the same tokens work again")
        await p.eventually(alerted, lambda n: n == SELECTED, "every member alerted", timeout_s=180)

    # the refreshes failed again and again, and nobody was logged out for it
    for service in (p.alerts, p.dispatch):
        failures = service.log().count("cannot fetch token signing keys")
        assert failures >= WORKING_S // 2, f"{service.name}: {failures} failed refreshes"
