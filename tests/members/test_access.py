"""Authorization on every object, and the 401s of bad tokens."""

from __future__ import annotations

import time

import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.members.signing import from_pem
from shared.auth import AUDIENCE, ISSUER
from tests.members.conftest import MembersUnderTest, login, make_section, member_body
from tests.support.tokens import TestKey


async def _account(svc: MembersUnderTest, role: str, sections: list[str]) -> str:
    email = f"{role}-{'-'.join(sections).lower() or 'none'}@example.org"
    async with svc.admin() as admin:
        r = await admin.post(
            "/accounts",
            json={
                "email": email,
                "password": "twelve chars at least",
                "role": role,
                "sections": sections,
            },
        )
        assert r.status_code in (201, 409), r.text
    return await login(svc.url, email, "twelve chars at least")


async def test_coordinator_sees_only_own_sections(members_service: MembersUnderTest) -> None:
    svc = members_service
    async with svc.admin() as admin:
        fr = await make_section(admin, "FR")
        it = await make_section(admin, "IT", country="IT", timezone="Europe/Rome", language="it")
        it_member = (await admin.post("/members", json=member_body(it))).json()["id"]
    fr_token = await _account(svc, "coordinator", [fr])
    async with svc.client(fr_token) as api:
        assert (await api.get(f"/members/{it_member}")).status_code == 404
        assert (
            await api.patch(f"/members/{it_member}", json={"status": "expelled"})
        ).status_code == 404
        assert (
            await api.put(f"/members/{it_member}/location", json={"lat": 1, "lon": 1})
        ).status_code == 404
        assert (await api.delete(f"/members/{it_member}")).status_code == 404
        refused = await api.post("/members", json=member_body(it))
        assert refused.status_code == 403
        own = await api.post("/members", json=member_body(fr))
        assert own.status_code == 201
        moved = await api.patch(f"/members/{own.json()['id']}", json={"section": it})
        assert moved.status_code == 403
        listed = (await api.get("/members")).json()
        assert {m["section"] for m in listed["items"]} == {fr}
        assert [s["code"] for s in (await api.get("/sections")).json()] == [fr]
        # staff administration is for admins
        assert (await api.get("/accounts")).status_code == 403
        assert (
            await api.post("/sections", json={"code": "XX", "name": "x", "country": "FR"})
        ).status_code == 403
        assert (
            await api.post("/qualifications", json={"code": "BOAT", "name": "Boat"})
        ).status_code == 403


async def test_authority_reads_counts_only(members_service: MembersUnderTest) -> None:
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin)
        member_id = (await admin.post("/members", json=member_body(section))).json()["id"]
    token = await _account(svc, "authority", [section])
    async with svc.client(token) as api:
        assert (await api.get(f"/members/{member_id}")).status_code == 403
        assert (await api.get("/members")).status_code == 403
        assert (await api.post("/members", json=member_body(section))).status_code == 403
        assert (await api.get("/sections")).status_code == 403
        assert (await api.delete(f"/members/{member_id}")).status_code == 403
        counts = await api.get(
            "/availability", params={"lat": 40.7239, "lon": 19.5561, "radius_km": 5}
        )
        assert counts.status_code == 200, counts.text
        assert counts.json()["available"] == "< 5"  # one member: below k, not shown
        assert "+33" not in counts.text and member_id not in counts.text


async def _service_key_pem(admin_engine: AsyncEngine, schema: str) -> str:
    async with admin_engine.connect() as conn:
        return (
            await conn.execute(text(f'SELECT private_pem FROM "{schema}".signing_keys'))
        ).scalar_one()


@pytest.mark.parametrize(
    "case", ["other_key", "expired", "no_role", "bad_role", "missing", "garbage"]
)
async def test_bad_tokens_are_refused(
    case: str, members_service: MembersUnderTest, admin_engine: AsyncEngine
) -> None:
    svc = members_service
    signing = from_pem(await _service_key_pem(admin_engine, svc.schema))
    async with svc.admin() as admin:
        # tokens must name a live account (members checks it on every request)
        admin_id = (await admin.get("/auth/me")).json()["id"]
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": admin_id,
        "ver": 0,
        "email": "a@b.c",
        "role": "admin",
        "sections": [],
        "iat": now,
        "exp": now + 600,
    }

    def signed(**changes: object) -> str:
        body = {**claims, **changes}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(
            body, signing.private_key, algorithm="RS256", headers={"kid": signing.kid}
        )

    token = {
        "other_key": TestKey(kid=signing.kid).token("admin"),
        "expired": signed(iat=now - 7200, exp=now - 3600),
        "no_role": signed(role=None),
        "bad_role": signed(role="root"),
        "missing": None,
        "garbage": "not-a-jwt",
    }[case]
    async with svc.client(token) as api:
        response = await api.get("/sections")
        assert response.status_code == 401, response.text
    # the same claims, properly signed, pass: the refusal above is about the defect
    async with svc.client(signed()) as api:
        assert (await api.get("/sections")).status_code == 200


async def test_login_refuses_wrong_password(members_service: MembersUnderTest) -> None:
    async with members_service.client() as api:
        r = await api.post(
            "/auth/token", data={"username": "admin@example.org", "password": "nope"}
        )
        assert r.status_code == 401
        r = await api.post(
            "/auth/token", data={"username": "ghost@example.org", "password": "nope"}
        )
        assert r.status_code == 401
