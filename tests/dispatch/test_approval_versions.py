"""The two-person rule is tied to what was approved (issue 10, defect 7): an approval names
the version it reviewed (a stale one is a 409 with the current version), an edit of a
pending emergency needs a fresh approval, and an approved emergency grown past what was
approved (area, members) needs a second person again. Pure rules first, then the real
dispatch process."""

from __future__ import annotations

import uuid

import httpx
from hypothesis import given
from hypothesis import strategies as st

from services.dispatch.emergencies import Reach, allowed_without_second_person, exceeds
from services.dispatch.settings import Settings
from tests.dispatch.conftest import SECTION, Staff, StartDispatch, emergency_body
from tests.support.tokens import bearer

reaches = st.builds(Reach, st.integers(1, 100_000), st.integers(1, 100_000))


@given(approved=st.one_of(st.none(), reaches), reach=reaches)
def test_one_person_never_goes_past_both_the_thresholds_and_the_approval(
    approved: Reach | None, reach: Reach
) -> None:
    settings = Settings(approval_radius_m=10_000, approval_members=500)
    allowed = allowed_without_second_person(approved, settings)
    limits = Reach(settings.approval_radius_m, settings.approval_members)
    if not exceeds(reach, allowed):
        # within what one person may decide: below the thresholds or what was approved
        assert reach.radius_m <= max(limits.radius_m, approved.radius_m if approved else 0)
        assert reach.expected_members <= max(
            limits.expected_members, approved.expected_members if approved else 0
        )
    if approved is None:
        assert allowed == limits
    assert not exceeds(limits, allowed), "the thresholds are always allowed"


async def test_approval_names_the_version_it_reviewed(
    start_dispatch: StartDispatch, staff: Staff
) -> None:
    """Fails before the fix: an approval without a version, or naming an old one after the
    declarer widened the area, was accepted and alerted the wider area."""
    dispatch = start_dispatch()
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        wide = await client.post(
            "/emergencies",
            json=emergency_body(area={"lat": 40.7, "lon": 19.5, "radius_m": 15_000}),
            headers=staff.coordinator(),
        )
        assert wide.json()["status"] == "pending_approval"
        path = f"/emergencies/{wide.json()['id']}"
        reviewed = wide.json()["version"]

        unnamed = await client.post(f"{path}/approve", headers=staff.second_coordinator())
        assert unnamed.status_code == 422, unnamed.text
        assert unnamed.json()["detail"][0]["loc"] == ["body", "version"]

        # while the second coordinator reads version 1, the declarer widens the area
        widened = await client.patch(
            path, json={"area": {"lat": 40.7, "lon": 19.5, "radius_m": 40_000}},
            headers=staff.coordinator(),
        )  # fmt: skip
        assert widened.status_code == 200 and widened.json()["version"] == reviewed + 1
        stale = await client.post(
            f"{path}/approve", json={"version": reviewed}, headers=staff.second_coordinator()
        )
        assert stale.status_code == 409, stale.text
        assert stale.json()["current_version"] == reviewed + 1
        assert "version" in stale.json()["detail"]
        still = await client.get(path, headers=staff.coordinator())
        assert still.json()["status"] == "pending_approval" and still.json()["approved_by"] is None

        bad = await client.post(
            f"{path}/approve", json={"version": 0}, headers=staff.second_coordinator()
        )
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "version"]

        approved = await client.post(
            f"{path}/approve", json={"version": reviewed + 1}, headers=staff.second_coordinator()
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "active"
        assert approved.json()["area"]["radius_m"] == 40_000
        audit = await client.get(
            "/audit", params={"emergency_id": wide.json()["id"], "action": "approved"},
            headers=staff.admin(),
        )  # fmt: skip
        assert [a["diff"]["version"] for a in audit.json()] == [reviewed + 1]


async def test_whoever_wrote_the_pending_version_cannot_approve_it(
    start_dispatch: StartDispatch, staff: Staff
) -> None:
    """Fails before the fix: a second coordinator could rewrite a held emergency and then
    approve their own version, one person deciding what goes out."""
    dispatch = start_dispatch()
    third_id = str(uuid.uuid4())
    third = bearer(staff.key.token("coordinator", [SECTION], subject=third_id))
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        held = await client.post(
            "/emergencies",
            json=emergency_body(area={"lat": 40.7, "lon": 19.5, "radius_m": 15_000}),
            headers=staff.coordinator(),
        )
        path = f"/emergencies/{held.json()['id']}"
        rewritten = await client.patch(
            path, json={"area": {"lat": 40.7, "lon": 19.5, "radius_m": 45_000}},
            headers=staff.second_coordinator(),
        )  # fmt: skip
        version = rewritten.json()["version"]
        own = await client.post(
            f"{path}/approve", json={"version": version}, headers=staff.second_coordinator()
        )
        assert own.status_code == 403, own.text
        assert "last change" in own.json()["detail"]
        approved = await client.post(f"{path}/approve", json={"version": version}, headers=third)
        assert approved.status_code == 200, approved.text
        assert approved.json()["approved_by"] == third_id


async def test_growing_an_approved_emergency_needs_a_second_person_again(
    start_dispatch: StartDispatch, staff: Staff
) -> None:
    """Fails before the fix: once approved, the declarer could grow the area to the
    maximum or multiply members_needed, with nobody else involved."""
    dispatch = start_dispatch(DISPATCH_APPROVAL_MEMBERS="20")
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        held = await client.post(
            "/emergencies",
            json=emergency_body(area={"lat": 40.7, "lon": 19.5, "radius_m": 15_000},
                                members_needed=10),
            headers=staff.coordinator(),
        )  # fmt: skip
        path = f"/emergencies/{held.json()['id']}"
        approved = await client.post(
            f"{path}/approve", json={"version": held.json()["version"]},
            headers=staff.second_coordinator(),
        )  # fmt: skip
        assert approved.json()["status"] == "active"

        # within what was approved: the declarer alone may
        within = await client.patch(
            path, json={"area": {"lat": 40.7, "lon": 19.5, "radius_m": 12_000},
                        "members_needed": 8},
            headers=staff.coordinator(),
        )  # fmt: skip
        assert within.status_code == 200, within.text
        back = await client.patch(
            path, json={"area": {"lat": 40.7, "lon": 19.5, "radius_m": 15_000}},
            headers=staff.coordinator(),
        )  # fmt: skip
        assert back.status_code == 200, back.text

        # past it, in area or in members: a second person is needed again
        wider = await client.patch(
            path, json={"area": {"lat": 40.7, "lon": 19.5, "radius_m": 30_000}},
            headers=staff.coordinator(),
        )  # fmt: skip
        assert wider.status_code == 403, wider.text
        assert "second" in wider.json()["detail"] or "coordinator" in wider.json()["detail"]
        more = await client.patch(path, json={"members_needed": 50}, headers=staff.coordinator())
        assert more.status_code == 403, more.text
        unchanged = await client.get(path, headers=staff.coordinator())
        assert unchanged.json()["area"]["radius_m"] == 15_000
        assert unchanged.json()["members_needed"] == 8

        # the second person makes it: that is the new approval, of that extent
        by_second = await client.patch(
            path, json={"area": {"lat": 40.7, "lon": 19.5, "radius_m": 30_000}},
            headers=staff.second_coordinator(),
        )  # fmt: skip
        assert by_second.status_code == 200, by_second.text
        assert by_second.json()["approved_by"] == staff.second_id
        # what stands now is what the second person last approved (30 km, 8 needed)
        within_new = await client.patch(
            path, json={"area": {"lat": 40.7, "lon": 19.5, "radius_m": 25_000}},
            headers=staff.coordinator(),
        )  # fmt: skip
        assert within_new.status_code == 200, within_new.text
        past_new = await client.patch(
            path, json={"members_needed": 10}, headers=staff.coordinator()
        )
        assert past_new.status_code == 403, past_new.text
        audit = await client.get(
            "/audit", params={"emergency_id": held.json()["id"], "action": "approved"},
            headers=staff.admin(),
        )  # fmt: skip
        assert [a["actor"] for a in audit.json()] == [staff.second_id, staff.second_id]
