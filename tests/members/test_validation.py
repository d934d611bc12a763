"""Bad input gets a 422 naming the field; a duplicate phone gets a 409."""

from __future__ import annotations

from typing import Any

import pytest

from tests.members.conftest import MembersUnderTest, make_section, member_body, unique_phone


def _field_named(response: Any, *path: str | int) -> bool:
    return any(
        [str(p) for p in err["loc"][1 : 1 + len(path)]] == [str(p) for p in path]
        for err in response.json()["detail"]
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"phone": "not a phone"}, ("phone",)),
        ({"phone": "+33 1"}, ("phone",)),
        ({"location": {"lat": 91, "lon": 0}}, ("location", "lat")),
        ({"location": {"lat": 0, "lon": 181}}, ("location", "lon")),
        ({"language": "tlh"}, ("language",)),
        (
            {
                "qualifications": [
                    {"code": "CPR", "issued_at": "2026-01-01", "expires_at": "2025-01-01"}
                ]
            },
            ("qualifications", 0, "expires_at"),
        ),
        ({"qualifications": [{"code": "NO_SUCH_CODE"}]}, ("qualifications", 0, "code")),
        ({"quiet_hours": {"start": "25:00", "end": "06:00"}}, ("quiet_hours", "start")),
        ({"quiet_hours": {"start": "06:00", "end": "06:00"}}, ("quiet_hours", "end")),
        ({"status": "retired"}, ("status",)),
        ({"section": "NOPE"}, ("section",)),
        ({"email": "not-an-email"}, ("email",)),
    ],
)
async def test_bad_member_is_422_naming_the_field(
    change: dict[str, Any], field: tuple[str | int, ...], members_service: MembersUnderTest
) -> None:
    async with members_service.admin() as admin:
        section = await make_section(admin, "VA")
        response = await admin.post("/members", json=member_body(section, **change))
    assert response.status_code == 422, response.text
    assert _field_named(response, *field), response.text


async def test_bad_location_and_availability_updates(members_service: MembersUnderTest) -> None:
    async with members_service.admin() as admin:
        section = await make_section(admin, "VA")
        member_id = (await admin.post("/members", json=member_body(section))).json()["id"]
        r = await admin.put(f"/members/{member_id}/location", json={"lat": 91, "lon": 0})
        assert r.status_code == 422 and _field_named(r, "lat")
        r = await admin.put(f"/members/{member_id}/availability", json={"availability": "maybe"})
        assert r.status_code == 422 and _field_named(r, "availability")
        r = await admin.patch(f"/members/{member_id}", json={"language": "xx"})
        assert r.status_code == 422 and _field_named(r, "language")
        r = await admin.post(
            "/sections", json={"code": "ZZ", "name": "Z", "country": "FR", "language": "xx"}
        )
        assert r.status_code == 422 and _field_named(r, "language")


async def test_duplicate_phone_is_409(members_service: MembersUnderTest) -> None:
    async with members_service.admin() as admin:
        section = await make_section(admin, "VA")
        phone = unique_phone()
        first = await admin.post("/members", json=member_body(section, phone=phone))
        assert first.status_code == 201
        # the same number written differently is the same number
        dup = await admin.post(
            "/members", json=member_body(section, phone=phone[:3] + " " + phone[3:])
        )
        assert dup.status_code == 409, dup.text
        other = (await admin.post("/members", json=member_body(section))).json()["id"]
        patched = await admin.patch(f"/members/{other}", json={"phone": phone})
        assert patched.status_code == 409
