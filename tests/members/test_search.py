"""`GET /members` filters: section, status, qualification, availability, qualifications
expiring soon, free text; every parameter bounded (422 naming it, never a 500)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tests.members.conftest import MembersUnderTest, login, make_section, member_body


def _in(days: int) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


async def test_filters_combine(members_service: MembersUnderTest) -> None:
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin)
        other = await make_section(admin)
        bodies = {
            "arta": member_body(
                section,
                full_name="Arta Hoxha",
                email="arta@fier.example",
                qualifications=[{"code": "FIRST_AID", "expires_at": _in(10)}],
            ),
            "besnik": member_body(
                section,
                full_name="Besnik Kola",
                email="besnik@fier.example",
                status="suspended",
                qualifications=[{"code": "CPR", "expires_at": _in(400)}],
            ),
            "chiara": member_body(
                section,
                full_name="Chiara Rossi_50%",
                email=None,
                qualifications=[{"code": "FIRST_AID", "expires_at": _in(-1)}],
            ),
            "dora": member_body(section, full_name="Dora Hoxha", qualifications=[]),
            "elsewhere": member_body(other, full_name="Arta Elsewhere"),
        }
        ids: dict[str, str] = {}
        phones: dict[str, str] = {}
        for name, body in bodies.items():
            r = await admin.post("/members", json=body)
            assert r.status_code == 201, r.text
            ids[name], phones[name] = r.json()["id"], r.json()["phone"]
        # unavailable until further notice / unavailable until a time already past
        await admin.put(
            f"/members/{ids['dora']}/availability", json={"availability": "unavailable"}
        )
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        await admin.put(
            f"/members/{ids['chiara']}/availability",
            json={"availability": "unavailable", "until": past},
        )

        async def names(**params: str | int) -> set[str]:
            r = await admin.get("/members", params={"section": section, **params})
            assert r.status_code == 200, r.text
            found = {m["id"] for m in r.json()["items"]}
            assert r.json()["total"] == len(found)
            return {name for name, member_id in ids.items() if member_id in found}

        assert await names() == {"arta", "besnik", "chiara", "dora"}
        assert await names(status="suspended") == {"besnik"}
        assert await names(qualification="FIRST_AID") == {"arta", "chiara"}
        assert await names(availability="unavailable") == {"dora"}
        assert await names(availability="available") == {"arta", "besnik", "chiara"}
        assert await names(expiring_within_days=30) == {"arta"}
        assert await names(expiring_within_days=9) == set()
        assert await names(expiring_within_days=400) == {"arta", "besnik"}
        assert await names(expiring_within_days=400, qualification="CPR") == {"besnik"}
        assert await names(q="hoxha") == {"arta", "dora"}
        assert await names(q="HOXHA", status="active", availability="available") == {"arta"}
        assert await names(q="besnik@fier") == {"besnik"}
        # LIKE wildcards in the text are literal
        assert await names(q="_50%") == {"chiara"}
        assert await names(q="%") == {"chiara"}
        assert await names(q=phones["besnik"][-6:]) == {"besnik"}
        without_section = await admin.get("/members", params={"q": "Arta"})
        found = {m["id"] for m in without_section.json()["items"]}
        assert {ids["arta"], ids["elsewhere"]} <= found

        coordinator_email = "search-coordinator@example.org"
        r = await admin.post(
            "/accounts",
            json={
                "email": coordinator_email,
                "password": "twelve chars at least",
                "role": "coordinator",
                "sections": [other],
            },
        )
        assert r.status_code in (201, 409), r.text
    token = await login(svc.url, coordinator_email, "twelve chars at least")
    async with svc.client(token) as coordinator:
        # another section's members are not found, however the filter is written
        r = await coordinator.get("/members", params={"section": section})
        assert r.json() == {"items": [], "total": 0}
        r = await coordinator.get("/members", params={"q": "Arta"})
        assert [m["id"] for m in r.json()["items"]] == [ids["elsewhere"]]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("q", "a\x00b"),
        ("q", "x" * 101),
        ("section", "fr"),
        ("section", "A\x00"),
        ("qualification", "FIRST AID"),
        ("status", "sleeping"),
        ("availability", "maybe"),
        ("expiring_within_days", "-1"),
        ("expiring_within_days", "14586635051180437504"),
        ("offset", "14586635051180437504"),
        ("limit", "0"),
        ("limit", "1001"),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    param: str, value: str, members_service: MembersUnderTest
) -> None:
    async with members_service.admin() as admin:
        r = await admin.get("/members", params={param: value})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", param]
