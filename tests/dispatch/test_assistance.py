"""Calling out another section's members (issue 10, defect 6): `assisting_sections` may
name only sections the caller acts for, or sections that agreed (an admin recorded it)
to assist the emergency's section; in POST and in PATCH. The rule is pure and
property-tested; the agreements and the refusals go through the real dispatch process."""

from __future__ import annotations

import httpx
from hypothesis import given
from hypothesis import strategies as st

from services.dispatch.assistance import unagreed_sections
from shared.auth import Principal
from tests.dispatch.conftest import OTHER_SECTION, SECTION, Staff, emergency_body
from tests.support.processes import ServiceProcess
from tests.support.tokens import bearer

codes = st.sampled_from(["AL", "XK", "MK", "ME", "RS", "GR"])


@given(
    own=st.frozensets(codes, max_size=3),
    section=codes,
    named=st.lists(codes, max_size=6),
    agreed=st.sets(codes, max_size=4),
    admin=st.booleans(),
)
def test_a_section_is_refused_exactly_when_neither_acted_for_nor_agreed(
    own: frozenset[str], section: str, named: list[str], agreed: set[str], admin: bool
) -> None:
    principal = Principal(
        "someone", "", "admin" if admin else "coordinator", frozenset() if admin else own
    )
    refused = unagreed_sections(principal, section, named, agreed)
    for code in set(named):
        allowed = admin or code in own or code in agreed or code == section
        assert (code in refused) is not allowed
    assert set(refused) <= set(named) and refused == sorted(set(refused))


async def test_assisting_sections_needs_an_agreement_or_the_section(
    dispatch: ServiceProcess, staff: Staff
) -> None:
    """Fails before the fix: a coordinator of AL named XK in assisting_sections (POST and
    PATCH) and XK's members would have been called out without XK having agreed."""
    both = bearer(staff.key.token("coordinator", [SECTION, OTHER_SECTION]))
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        refused = await client.post(
            "/emergencies", json=emergency_body(assisting_sections=[OTHER_SECTION]),
            headers=staff.coordinator(),
        )  # fmt: skip
        assert refused.status_code == 403, refused.text
        error = refused.json()["detail"][0]
        assert error["loc"] == ["body", "assisting_sections"]
        assert OTHER_SECTION in error["msg"] and SECTION in error["msg"]

        # a coordinator of both sections may
        own = await client.post(
            "/emergencies", json=emergency_body(assisting_sections=[OTHER_SECTION]),
            headers=both,
        )  # fmt: skip
        assert own.status_code == 201, own.text

        # PATCH: adding XK is refused too, and nothing changes
        plain = await client.post(
            "/emergencies", json=emergency_body(), headers=staff.coordinator()
        )
        path = f"/emergencies/{plain.json()['id']}"
        patched = await client.patch(
            path, json={"assisting_sections": ["MK", OTHER_SECTION]}, headers=staff.coordinator()
        )
        assert patched.status_code == 403, patched.text
        refusals = patched.json()["detail"]
        assert [e["loc"] for e in refusals] == [["body", "assisting_sections"]] * 2
        assert [e["input"] for e in refusals] == ["MK", OTHER_SECTION]
        unchanged = await client.get(path, headers=staff.coordinator())
        assert unchanged.json()["assisting_sections"] == []
        assert unchanged.json()["version"] == plain.json()["version"]

        # an admin records that XK assists AL (only an admin may)
        agreement = {"section": SECTION, "assisting_section": OTHER_SECTION}
        as_coordinator = await client.post(
            "/assistance-agreements", json=agreement, headers=staff.coordinator()
        )
        assert as_coordinator.status_code == 403
        recorded = await client.post(
            "/assistance-agreements", json=agreement, headers=staff.admin()
        )
        assert recorded.status_code == 201, recorded.text
        again = await client.post("/assistance-agreements", json=agreement, headers=staff.admin())
        assert again.status_code == 200
        same = await client.post(
            "/assistance-agreements", json={"section": "AL", "assisting_section": "AL"},
            headers=staff.admin(),
        )  # fmt: skip
        assert same.status_code == 422
        listed = await client.get("/assistance-agreements", headers=staff.coordinator())
        assert [(a["section"], a["assisting_section"]) for a in listed.json()] == [
            (SECTION, OTHER_SECTION)
        ]

        # now XK may be named; MK (no agreement) still not
        agreed = await client.patch(
            path, json={"assisting_sections": [OTHER_SECTION]}, headers=staff.coordinator()
        )
        assert agreed.status_code == 200, agreed.text
        assert agreed.json()["assisting_sections"] == [OTHER_SECTION]
        mk = await client.patch(
            path, json={"assisting_sections": [OTHER_SECTION, "MK"]}, headers=staff.coordinator()
        )
        assert mk.status_code == 403 and "MK" in mk.json()["detail"][0]["msg"]
        # the agreement is one way: AL has not agreed to assist XK
        reverse = await client.post(
            "/emergencies",
            json=emergency_body(section=OTHER_SECTION, assisting_sections=[SECTION]),
            headers=staff.other_coordinator(),
        )
        assert reverse.status_code == 403

        # ended: new emergencies may not name XK; the one that has it keeps it
        ended = await client.delete(
            f"/assistance-agreements/{SECTION}/{OTHER_SECTION}", headers=staff.admin()
        )
        assert ended.status_code == 204
        gone = await client.delete(
            f"/assistance-agreements/{SECTION}/{OTHER_SECTION}", headers=staff.admin()
        )
        assert gone.status_code == 404
        after = await client.post(
            "/emergencies", json=emergency_body(assisting_sections=[OTHER_SECTION]),
            headers=staff.coordinator(),
        )  # fmt: skip
        assert after.status_code == 403
        unrelated = await client.patch(path, json={"title": "Flooding, Fier west"},
                                       headers=staff.coordinator())  # fmt: skip
        assert unrelated.status_code == 200, unrelated.text
        assert unrelated.json()["assisting_sections"] == [OTHER_SECTION]
        audit = await client.get("/audit", headers=staff.admin())
        actions = [a["action"] for a in audit.json() if a["emergency_id"] is None]
        assert actions == ["assistance_agreed", "assistance_ended"]
