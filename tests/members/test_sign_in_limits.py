"""Issue 10, defect 11: signing in is not a password oracle. Against a real members
process and Redis: an account is locked (429 with Retry-After, before the password is
looked at) after its free failures, longer after each further one; an unknown email is
locked the same way (no account enumeration); a success forgets the account's failures;
an address trying many accounts is locked for all of them."""

from __future__ import annotations

import asyncio

import httpx
from hypothesis import given
from hypothesis import strategies as st

from services.members.sign_in_limits import lockout_s
from tests.members.conftest import MembersUnderTest, make_section

BASE_S = 2
MEMBERS_ENV = {
    "MUSTER_SIGNIN_FREE_FAILURES_PER_ACCOUNT": "3",
    "MUSTER_SIGNIN_FREE_FAILURES_PER_ADDRESS": "12",
    "MUSTER_SIGNIN_LOCKOUT_BASE_S": str(BASE_S),
    "MUSTER_SIGNIN_LOCKOUT_MAX_S": "60",
}
PASSWORD = "twelve chars at least"


@given(
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=1, max_value=50),
    st.floats(min_value=0.1, max_value=100),
    st.floats(min_value=1, max_value=86_400),
)
def test_lockout_grows_then_stays_capped(failures: int, free: int, base: float, cap: float) -> None:
    now = lockout_s(failures, free=free, base_s=base, max_s=cap)
    after = lockout_s(failures + 1, free=free, base_s=base, max_s=cap)
    assert 0 <= now <= after <= cap
    assert (now == 0) == (failures < free)


async def sign_in(svc: MembersUnderTest, email: str, password: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=svc.url, timeout=60) as client:
        return await client.post("/auth/token", data={"username": email, "password": password})


async def coordinator(svc: MembersUnderTest, name: str) -> str:
    async with svc.admin() as admin:
        section = await make_section(admin)
        email = f"{name}-{section.lower()}@example.org"
        r = await admin.post(
            "/accounts",
            json={"email": email, "password": PASSWORD, "role": "coordinator",
                  "sections": [section]},
        )  # fmt: skip
        assert r.status_code == 201, r.text
    return email


async def test_an_account_is_locked_with_backoff_and_a_success_resets_it(
    members_service: MembersUnderTest,
) -> None:
    svc = members_service
    email = await coordinator(svc, "locked")
    for _ in range(3):
        assert (await sign_in(svc, email, "wrong password!")).status_code == 401
    locked = await sign_in(svc, email, PASSWORD)  # even the right password waits
    assert locked.status_code == 429, locked.text
    assert 1 <= int(locked.headers["Retry-After"]) <= BASE_S
    assert "too many failed sign-ins for this account" in locked.json()["detail"]
    await asyncio.sleep(BASE_S + 0.5)
    # one more failure after the lock: locked twice as long
    assert (await sign_in(svc, email, "wrong again!!")).status_code == 401
    longer = await sign_in(svc, email, PASSWORD)
    assert longer.status_code == 429 and int(longer.headers["Retry-After"]) > BASE_S
    await asyncio.sleep(2 * BASE_S + 0.5)
    assert (await sign_in(svc, email, PASSWORD)).status_code == 200
    # the success forgot the failures: three free ones again
    for _ in range(2):
        assert (await sign_in(svc, email, "wrong password!")).status_code == 401
    assert (await sign_in(svc, email, PASSWORD)).status_code == 200

    # an unknown email is answered exactly like a known one
    ghost = "nobody-here@example.org"
    for _ in range(3):
        assert (await sign_in(svc, ghost, "wrong password!")).status_code == 401
    assert (await sign_in(svc, ghost, "wrong password!")).status_code == 429


async def test_an_address_guessing_many_accounts_is_locked_for_every_account(
    members_service: MembersUnderTest,
) -> None:
    svc = members_service
    await asyncio.sleep(2 * BASE_S + 0.5)  # the previous test's lock has passed
    real = await coordinator(svc, "bystander")
    # the first test left 9 failures on this address (free: 12); three new emails,
    # one failure each, pass it
    statuses = [
        (await sign_in(svc, f"guess{n}@example.org", "password1234")).status_code for n in range(4)
    ]
    assert statuses[:3] == [401, 401, 401] and statuses[3] == 429, statuses
    refused = await sign_in(svc, real, PASSWORD)
    assert refused.status_code == 429
    assert "from this address" in refused.json()["detail"]
