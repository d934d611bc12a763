"""Issue 10, defect 13: availability counts cannot locate a member. Against a real
members process: a radius below the minimum is a 422 naming radius_km; counts below k
are "< k" (zero too); each account gets a limited number of counts a minute (429 with
Retry-After), another account is not held up by it."""

from __future__ import annotations

import asyncio
import time

from hypothesis import given
from hypothesis import strategies as st

from services.members.availability import shown
from tests.members.conftest import MembersUnderTest, login, make_section, member_body

K = 3
RATE = 12
MEMBERS_ENV = {
    "MUSTER_AVAILABILITY_MIN_COUNT": str(K),
    "MUSTER_AVAILABILITY_RATE_PER_MIN": str(RATE),
    "MUSTER_AVAILABILITY_MIN_RADIUS_KM": "1",
}
HOME = {"lat": 45.4642, "lon": 9.19}


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=1000))
def test_a_shown_count_is_k_or_more_or_says_fewer_than_k(count: int, k: int) -> None:
    value = shown(count, k)
    assert value == count if count >= k else value == f"< {k}"


async def authority(svc: MembersUnderTest, admin_client, section: str, name: str) -> str:  # type: ignore[no-untyped-def]
    email = f"{name}-{section.lower()}@example.org"
    r = await admin_client.post(
        "/accounts",
        json={"email": email, "password": "twelve chars at least", "role": "authority",
              "sections": [section]},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return await login(svc.url, email, "twelve chars at least")


async def test_small_radius_refused_and_small_counts_suppressed(
    members_service: MembersUnderTest,
) -> None:
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin)
        lonely = await admin.post("/members", json=member_body(section, location=HOME))
        assert lonely.status_code == 201, lonely.text
        token = await authority(svc, admin, section, "prefecture")

    async with svc.client(token) as api:
        tiny = await api.get("/availability", params={**HOME, "radius_km": 0.2})
        assert tiny.status_code == 422, tiny.text
        assert tiny.json()["detail"][0]["loc"] == ["query", "radius_km"]
        assert "at least 1 km" in tiny.json()["detail"][0]["msg"]

        one = (await api.get("/availability", params={**HOME, "radius_km": 1})).json()
        assert one["available"] == f"< {K}" and one["smallest_count_shown"] == K
        assert one["by_qualification"] == {"FIRST_AID": f"< {K}"}
        # nobody there looks the same as one member there
        empty = (
            await api.get("/availability", params={"lat": -45.0, "lon": -120.0, "radius_km": 1})
        ).json()
        assert empty["available"] == f"< {K}"

    async with svc.admin() as admin:
        for _ in range(K - 1):
            r = await admin.post("/members", json=member_body(section, location=HOME))
            assert r.status_code == 201, r.text
    async with svc.client(token) as api:
        three = (await api.get("/availability", params={**HOME, "radius_km": 1})).json()
        assert three["available"] == K and three["by_qualification"] == {"FIRST_AID": K}


async def test_counts_are_rate_limited_per_account(members_service: MembersUnderTest) -> None:
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin)
        first = await authority(svc, admin, section, "first")
        second = await authority(svc, admin, section, "second")
    params = {**HOME, "radius_km": 5}
    if time.time() % 60 > 45:  # the requests must fall in one minute's window
        await asyncio.sleep(61 - time.time() % 60)
    async with svc.client(first) as api:
        statuses = [
            (await api.get("/availability", params=params)).status_code for _ in range(RATE + 3)
        ]
        refused = await api.get("/availability", params=params)
    assert statuses.count(200) <= RATE and statuses[0] == 200
    assert 429 in statuses and refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "try again in" in refused.json()["detail"]
    async with svc.client(second) as api:
        assert (await api.get("/availability", params=params)).status_code == 200
