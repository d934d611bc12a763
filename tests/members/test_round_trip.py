"""The API round trip against a real members process, with every snapshot read back from
Kafka by a real consumer, in order per member (versions increase)."""

from __future__ import annotations

from tests.members.conftest import (
    MembersUnderTest,
    login,
    make_section,
    member_body,
    snapshots_of,
    unique_phone,
)


async def _coordinator(svc: MembersUnderTest, sections: list[str]) -> str:
    email = f"coord-{sections[0].lower()}@example.org"
    async with svc.admin() as admin:
        created = await admin.post(
            "/accounts",
            json={
                "email": email,
                "password": "a long enough password",
                "role": "coordinator",
                "sections": sections,
            },
        )
        assert created.status_code == 201, created.text
        assert "password" not in created.text
    return await login(svc.url, email, "a long enough password")


async def test_round_trip_with_snapshots_in_order(members_service: MembersUnderTest) -> None:
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin, timezone="Europe/Tirane", language="sq")
        added = await admin.post("/qualifications", json={"code": "BOAT", "name": "Boat crew"})
        assert added.status_code in (201, 409)
        again = await admin.post("/qualifications", json={"code": "BOAT", "name": "Boat crew"})
        assert again.status_code == 409
        catalogue = {q["code"] for q in (await admin.get("/qualifications")).json()}
        assert {
            "FIRST_AID",
            "CPR",
            "SAR",
            "ICS_100",
            "ICS_200",
            "SCHOOL_SAFETY",
            "DRIVER",
        } < catalogue
        assert "BOAT" in catalogue
        jwks = (await admin.get("/.well-known/jwks.json")).json()
        assert jwks["keys"] and jwks["keys"][0]["kty"] == "RSA"
        assert section in [s["code"] for s in (await admin.get("/sections")).json()]
    token = await _coordinator(svc, [section])

    async with svc.client(token) as api:
        phone = unique_phone()
        created = await api.post("/members", json=member_body(section, phone=phone))
        assert created.status_code == 201, created.text
        member = created.json()
        member_id = member["id"]
        assert member["phone"] == phone and member["version"] == 1
        assert member["language"] == "sq"
        assert member["quiet_hours"] == {"start": "23:00:00", "end": "06:30:00"}

        got = await api.get(f"/members/{member_id}")
        assert got.status_code == 200 and got.json()["full_name"] == "Arta Hoxha"

        steps = [
            ("PATCH", f"/members/{member_id}", {"status": "suspended"}),
            ("PATCH", f"/members/{member_id}", {"status": "active"}),
            (
                "POST",
                f"/members/{member_id}/qualifications",
                {"code": "BOAT", "issued_at": "2025-01-01", "expires_at": "2030-01-01"},
            ),
            ("DELETE", f"/members/{member_id}/qualifications/FIRST_AID", None),
            (
                "PUT",
                f"/members/{member_id}/availability",
                {"availability": "unavailable", "until": "2030-01-01T08:00:00Z"},
            ),
            ("PUT", f"/members/{member_id}/location", {"lat": 41.0, "lon": 20.0, "source": "home"}),
            ("PUT", f"/members/{member_id}/location", {"lat": 41.1, "lon": 20.1}),
            ("PATCH", f"/members/{member_id}", {"quiet_hours": None, "language": "en"}),
        ]
        for method, path, body in steps:
            response = await api.request(method, path, json=body)
            assert response.status_code in (200, 201), (path, response.text)

        # a name change does not affect targeting: no new snapshot
        renamed = await api.patch(f"/members/{member_id}", json={"full_name": "Arta H."})
        assert renamed.status_code == 200
        final = renamed.json()
        assert final["version"] == 1 + len(steps)

    mine = await snapshots_of(svc, member_id, len(steps) + 1)
    assert [e["version"] for e in mine] == list(range(1, len(steps) + 2))
    first, *rest = mine
    assert first["phone"] == phone and first["section"] == section
    assert first["timezone"] == "Europe/Tirane"
    assert first["consent_alerts"] is True
    assert [q["code"] for q in first["qualifications"]] == ["FIRST_AID"]
    assert "full_name" not in first and "email" not in first
    assert rest[0]["status"] == "suspended" and rest[1]["status"] == "active"
    assert [q["code"] for q in rest[2]["qualifications"]] == ["BOAT", "FIRST_AID"]
    assert rest[2]["qualifications"][0]["expires_at"] == "2030-01-01"
    assert [q["code"] for q in rest[3]["qualifications"]] == ["BOAT"]
    assert rest[4]["availability"] == "unavailable"
    assert rest[4]["unavailable_until"].startswith("2030-01-01T08:00")
    assert rest[5]["home"]["lat"] == 41.0 and rest[5]["live"] is None
    assert rest[6]["live"]["lat"] == 41.1 and rest[6]["live"]["source"] == "live"
    assert rest[7]["quiet_hours"] is None and rest[7]["language"] == "en"


async def test_live_location_burst_is_coalesced(members_service: MembersUnderTest) -> None:
    """Ten fixes a few metres apart give one snapshot; a move of a kilometre gives another;
    a fix older than the stored one is ignored."""
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin)
        member_id = (await admin.post("/members", json=member_body(section))).json()["id"]
        for i in range(10):
            fix = {"lat": 45.0 + i * 0.00001, "lon": 7.0, "at": f"2026-01-01T10:00:{i:02d}Z"}
            r = await admin.put(f"/members/{member_id}/location", json=fix)
            assert r.status_code == 200, r.text
        moved = {"lat": 45.01, "lon": 7.0, "at": "2026-01-01T10:00:30Z"}
        assert (await admin.put(f"/members/{member_id}/location", json=moved)).status_code == 200
        stale = {"lat": 46.0, "lon": 8.0, "at": "2026-01-01T09:00:00Z"}
        after = await admin.put(f"/members/{member_id}/location", json=stale)
        assert after.json()["location"]["live"]["lat"] == 45.01
        assert after.json()["version"] == 3

    mine = await snapshots_of(svc, member_id, 3)
    assert [d["version"] for d in mine] == [1, 2, 3]
    assert mine[1]["live"]["lat"] == 45.0
    assert mine[2]["live"]["lat"] == 45.01


async def test_concurrent_changes_publish_every_version_in_order(
    members_service: MembersUnderTest,
) -> None:
    """Twenty changes of one member sent at once: versions 2..21 on Kafka, no gap, no
    reordering, and the last snapshot is the member's final state."""
    import asyncio

    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin)
        member_id = (await admin.post("/members", json=member_body(section))).json()["id"]

        async def change(i: int) -> int:
            body = {"quiet_hours": {"start": f"{i:02d}:00", "end": f"{i:02d}:30"}}
            return (await admin.patch(f"/members/{member_id}", json=body)).status_code

        assert set(await asyncio.gather(*(change(i) for i in range(20)))) == {200}
        final = (await admin.get(f"/members/{member_id}")).json()
    assert final["version"] == 21
    mine = await snapshots_of(svc, member_id, 21)
    assert [d["version"] for d in mine] == list(range(1, 22))
    assert mine[-1]["quiet_hours"] == {
        "start": final["quiet_hours"]["start"],
        "end": final["quiet_hours"]["end"],
    }
