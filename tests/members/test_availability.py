"""`GET /availability` counts who could answer: active, consenting, available, in the
radius (live position while fresh, else home), with valid qualifications."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.members.conftest import MembersUnderTest, login, make_section, member_body

#: these tests check which members count, so every count is shown (k = 1); the
#: suppression of small counts has its own tests (test_availability_privacy.py)
MEMBERS_ENV = {"MUSTER_AVAILABILITY_MIN_COUNT": "1"}

CENTRE = {"lat": -33.92, "lon": 18.42}
NEAR = {"lat": -33.93, "lon": 18.43}  # ~1.4 km
FAR = {"lat": -34.2, "lon": 18.9}  # ~50 km


async def test_counts_follow_the_rules(members_service: MembersUnderTest) -> None:
    svc = members_service
    now = datetime.now(UTC)
    valid = [{"code": "FIRST_AID", "expires_at": "2099-01-01"}]
    expired = [{"code": "FIRST_AID", "issued_at": "2020-01-01", "expires_at": "2021-01-01"}]
    async with svc.admin() as admin:
        section = await make_section(admin)
        other = await make_section(admin)

        async def member(**extra: object) -> str:
            r = await admin.post(
                "/members", json=member_body(section, **{"qualifications": [], **extra})
            )
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        await member(location=NEAR, qualifications=valid)  # counts, FIRST_AID
        await member(location=NEAR, qualifications=[*expired, {"code": "SAR"}])  # counts, SAR
        suspended = await member(location=NEAR)
        await admin.patch(f"/members/{suspended}", json={"status": "suspended"})
        await member(location=NEAR, consent={"alerts": False})
        await member(location=NEAR, availability="unavailable")
        back = await member(location=NEAR)
        past = (now - timedelta(minutes=5)).isoformat()
        await admin.put(
            f"/members/{back}/availability", json={"availability": "unavailable", "until": past}
        )  # counts
        away = await member(location=FAR, qualifications=valid)  # counts: fresh live fix near
        await admin.put(f"/members/{away}/location", json=NEAR)
        gone = await member(location=NEAR)  # fresh live fix far: does not count
        await admin.put(f"/members/{gone}/location", json=FAR)
        stale = await member(location=FAR)  # old live fix near: falls back to home, far
        old = (now - timedelta(hours=3)).isoformat()
        await admin.put(f"/members/{stale}/location", json={**NEAR, "at": old})
        erased = await member(location=NEAR)
        await admin.delete(f"/members/{erased}")
        await member(location=FAR)
        r = await admin.post("/members", json=member_body(other, location=NEAR))
        assert r.status_code == 201

        r = await admin.post(
            "/accounts",
            json={
                "email": f"auth-{section.lower()}@example.org",
                "password": "twelve chars at least",
                "role": "authority",
                "sections": [section],
            },
        )
        assert r.status_code == 201, r.text
    token = await login(svc.url, f"auth-{section.lower()}@example.org", "twelve chars at least")

    async with svc.client(token) as api:
        params = {**CENTRE, "radius_km": 5}
        counts = (await api.get("/availability", params=params)).json()
        assert counts["available"] == 4, counts
        assert counts["by_qualification"] == {"FIRST_AID": 2, "SAR": 1}
        only_aid = (
            await api.get("/availability", params={**params, "qualification": "FIRST_AID"})
        ).json()
        assert only_aid["available"] == 2
        assert only_aid["by_qualification"] == {"FIRST_AID": 2}
        wide = (await api.get("/availability", params={**CENTRE, "radius_km": 100})).json()
        assert wide["available"] == 7  # + the live-far one, the stale one, the far one
        bad = await api.get("/availability", params={"lat": 91, "lon": 0, "radius_km": 5})
        assert bad.status_code == 422 and "lat" in bad.text
    async with svc.admin() as admin:
        everyone = (await admin.get("/availability", params={**CENTRE, "radius_km": 5})).json()
        assert everyone["available"] == 5  # the admin also counts the other section
