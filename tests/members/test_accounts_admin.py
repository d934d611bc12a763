"""Administering staff accounts and sections: role and section changes, disabling (the
login and every earlier token stop working), `GET /auth/me`, and section edits."""

from __future__ import annotations

import uuid

import httpx

from services.members.access import REVOKED
from tests.members.conftest import (
    MembersUnderTest,
    login,
    make_section,
    member_body,
    snapshots_of,
    unique_section,
)

PASSWORD = "twelve chars at least"


async def _new_account(admin: httpx.AsyncClient, role: str, sections: list[str]) -> tuple[str, str]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.org"
    r = await admin.post(
        "/accounts",
        json={"email": email, "password": PASSWORD, "role": role, "sections": sections},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), email


async def test_changing_role_or_sections_revokes_earlier_tokens(
    members_service: MembersUnderTest,
) -> None:
    svc = members_service
    async with svc.admin() as admin:
        first, second = await make_section(admin), await make_section(admin)
        account_id, email = await _new_account(admin, "coordinator", [first])
        token = await login(svc.url, email, PASSWORD)
        async with svc.client(token) as api:
            me = await api.get("/auth/me")
            assert me.status_code == 200, me.text
            assert (me.json()["id"], me.json()["role"], me.json()["sections"]) == (
                account_id,
                "coordinator",
                [first],
            )
            assert me.json()["disabled"] is False
            # staff administration stays with admins
            assert (await api.get(f"/accounts/{account_id}")).status_code == 403
            assert (
                await api.patch(f"/accounts/{account_id}", json={"sections": [second]})
            ).status_code == 403

        read = await admin.get(f"/accounts/{account_id}")
        assert read.status_code == 200 and read.json()["email"] == email

        changed = await admin.patch(f"/accounts/{account_id}", json={"sections": [second, first]})
        assert changed.status_code == 200, changed.text
        assert changed.json()["sections"] == sorted([first, second])
        async with svc.client(token) as api:
            stale = await api.get("/auth/me")
            assert stale.status_code == 401
            assert stale.json()["detail"] == REVOKED
            assert (await api.get("/members")).status_code == 401

        fresh = await login(svc.url, email, PASSWORD)
        async with svc.client(fresh) as api:
            assert (await api.get("/auth/me")).json()["sections"] == sorted([first, second])

        promoted = await admin.patch(f"/accounts/{account_id}", json={"role": "authority"})
        assert promoted.json()["role"] == "authority"
        async with svc.client(fresh) as api:
            assert (await api.get("/auth/me")).status_code == 401
        # a change that changes nothing revokes nothing
        newest = await login(svc.url, email, PASSWORD)
        same = await admin.patch(f"/accounts/{account_id}", json={"role": "authority"})
        assert same.status_code == 200
        async with svc.client(newest) as api:
            assert (await api.get("/auth/me")).status_code == 200


async def test_a_disabled_account_cannot_log_in_and_its_tokens_stop(
    members_service: MembersUnderTest,
) -> None:
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin)
        account_id, email = await _new_account(admin, "coordinator", [section])
        token = await login(svc.url, email, PASSWORD)

        disabled = await admin.patch(f"/accounts/{account_id}", json={"disabled": True})
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["disabled"] is True
        assert disabled.json()["disabled_at"]
        listed = {a["id"]: a for a in (await admin.get("/accounts")).json()}
        assert listed[account_id]["disabled"] is True

        async with svc.client() as anonymous:
            refused = await anonymous.post(
                "/auth/token", data={"username": email, "password": PASSWORD}
            )
            wrong = await anonymous.post(
                "/auth/token", data={"username": email, "password": "not the password"}
            )
        # the same answer as a wrong password: a login does not reveal a disabled account
        assert refused.status_code == wrong.status_code == 401
        assert refused.json() == wrong.json()
        async with svc.client(token) as api:
            assert (await api.get("/auth/me")).status_code == 401
            assert (await api.get("/members")).status_code == 401
            assert (await api.post("/members", json=member_body(section))).status_code == 401

        enabled = await admin.patch(f"/accounts/{account_id}", json={"disabled": False})
        assert enabled.json()["disabled"] is False and enabled.json()["disabled_at"] is None
        again = await login(svc.url, email, PASSWORD)
        async with svc.client(again) as api:
            assert (await api.get("/auth/me")).status_code == 200
        # the token from before the account was disabled stays revoked
        async with svc.client(token) as api:
            assert (await api.get("/auth/me")).status_code == 401


async def test_account_changes_are_checked(members_service: MembersUnderTest) -> None:
    svc = members_service
    async with svc.admin() as admin:
        me = (await admin.get("/auth/me")).json()
        assert me["role"] == "admin"
        own = await admin.patch(f"/accounts/{me['id']}", json={"disabled": True})
        assert own.status_code == 409
        demoted = await admin.patch(f"/accounts/{me['id']}", json={"role": "coordinator"})
        assert demoted.status_code == 409
        assert (await admin.get("/auth/me")).json()["role"] == "admin"

        section = await make_section(admin)
        account_id, _ = await _new_account(admin, "coordinator", [section])
        cases: list[tuple[dict[str, object], int, str]] = [
            ({"sections": ["NOWHERE"]}, 422, "sections"),
            ({"sections": []}, 422, "sections"),
            ({"sections": ["bad code"]}, 422, "sections"),
            ({"role": "root"}, 422, "role"),
            ({"disabled": None}, 422, ""),
            ({"password": "x"}, 422, "password"),
        ]
        for body, code, field in cases:
            r = await admin.patch(f"/accounts/{account_id}", json=body)
            assert r.status_code == code, (body, r.text)
            if field:
                assert field in {str(p) for e in r.json()["detail"] for p in e["loc"]}, r.text
        unknown = uuid.uuid4()
        assert (await admin.get(f"/accounts/{unknown}")).status_code == 404
        assert (
            await admin.patch(f"/accounts/{unknown}", json={"disabled": True})
        ).status_code == 404
        assert (await admin.get("/accounts/not-a-uuid")).status_code == 422
        # nothing above changed the account
        assert (await admin.get(f"/accounts/{account_id}")).json()["sections"] == [section]


async def test_sections_are_edited_by_admins_and_a_new_time_zone_reaches_snapshots(
    members_service: MembersUnderTest,
) -> None:
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin, unique_section())
        other = await make_section(admin, unique_section())
        member = await admin.post("/members", json=member_body(section))
        assert member.status_code == 201, member.text
        member_id = member.json()["id"]
        _, email = await _new_account(admin, "coordinator", [section])

        changed = await admin.patch(
            f"/sections/{section}",
            json={"name": "Fier", "timezone": "Europe/Tirane", "language": "sq"},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json() == {
            "code": section,
            "name": "Fier",
            "country": "FR",
            "timezone": "Europe/Tirane",
            "language": "sq",
        }
        assert (await admin.get(f"/sections/{section}")).json()["name"] == "Fier"
        bad_zone = await admin.patch(f"/sections/{section}", json={"timezone": "Mars/Olympus"})
        assert bad_zone.status_code == 422
        assert bad_zone.json()["detail"][0]["loc"] == ["body", "timezone"]
        assert (await admin.patch(f"/sections/{section}", json={"code": "X"})).status_code == 422
        assert (await admin.patch("/sections/NOSUCH", json={"name": "x"})).status_code == 404
        bad_path = await admin.get("/sections/a%00b")
        assert bad_path.status_code == 422
        assert bad_path.json()["detail"][0]["loc"] == ["path", "code"]

    async with svc.client(await login(svc.url, email, PASSWORD)) as coordinator:
        assert (await coordinator.get(f"/sections/{section}")).status_code == 200
        assert (await coordinator.get(f"/sections/{other}")).status_code == 404
        assert (
            await coordinator.patch(f"/sections/{section}", json={"name": "Mine"})
        ).status_code == 403

    snapshots = await snapshots_of(svc, member_id, 2)
    assert [(s["version"], s["timezone"]) for s in snapshots] == [
        (1, "Europe/Paris"),
        (2, "Europe/Tirane"),
    ]


async def test_a_coordinator_without_sections_is_refused_naming_sections(
    members_service: MembersUnderTest,
) -> None:
    async with members_service.admin() as admin:
        r = await admin.post(
            "/accounts",
            json={"email": "nosection@example.org", "password": PASSWORD, "role": "coordinator"},
        )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "sections"]
