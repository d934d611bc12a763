"""Issue 10, defect 11: a flood of sign-ins does not pile up password checks (argon2:
a core and ~64 MiB each). With one check at a time and one waiting, the rest of a burst
is answered 503 with Retry-After at once, and the service still signs people in after."""

from __future__ import annotations

import asyncio

import httpx

from services.members.sign_in_limits import HashingBusy, PasswordCheckGate
from tests.members.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, MembersUnderTest

MEMBERS_ENV = {
    "MUSTER_PASSWORD_HASH_CONCURRENCY": "1",
    "MUSTER_PASSWORD_HASH_QUEUE": "1",
    "MUSTER_SIGNIN_FREE_FAILURES_PER_ADDRESS": "1000",
}


async def test_the_gate_runs_at_most_concurrency_and_refuses_past_the_queue() -> None:
    gate = PasswordCheckGate(concurrency=2, queue=1)
    release = asyncio.Event()
    running = 0
    most = 0

    def check() -> bool:
        nonlocal running, most
        running += 1
        most = max(most, running)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        running -= 1
        return True

    loop = asyncio.get_running_loop()
    held = [asyncio.create_task(gate.run(check)) for _ in range(3)]  # 2 run, 1 waits
    await asyncio.sleep(0.2)
    try:
        await gate.run(check)
        raise AssertionError("a fourth check should have been refused")
    except HashingBusy:
        pass
    release.set()
    assert await asyncio.gather(*held) == [True, True, True]
    assert most == 2
    assert await gate.run(lambda: True) is True


async def test_a_burst_of_sign_ins_gets_503_not_a_pile_up(
    members_service: MembersUnderTest,
) -> None:
    svc = members_service
    async with httpx.AsyncClient(base_url=svc.url, timeout=120) as client:

        async def attempt(n: int) -> httpx.Response:
            return await client.post(
                "/auth/token", data={"username": f"flood{n}@example.org", "password": "x" * 12}
            )

        answers = await asyncio.gather(*(attempt(n) for n in range(24)))
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {401, 503}, statuses
        assert statuses.count(503) >= 6, statuses
        busy = next(a for a in answers if a.status_code == 503)
        assert busy.headers["Retry-After"] == "2"
        assert "try again in a few seconds" in busy.json()["detail"]
        ok = await client.post(
            "/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert ok.status_code == 200
