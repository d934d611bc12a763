"""The members CSV export (issue 12): the import's columns, so that export → import of a
section gives the same registry back; only a coordinator of the section or an admin."""

from __future__ import annotations

import csv
import io
from datetime import date, time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.members import exporting
from services.members.importing import CSV_COLUMNS, row_to_body
from tests.members.conftest import (
    MembersUnderTest,
    login,
    make_section,
    member_body,
    unique_phone,
)

PASSWORD = "a long enough password"


def _member(**changes: Any) -> dict[str, Any]:
    base = {
        "section": "FIER", "full_name": "Arta Hoxha", "phone": "+355691234567",
        "email": "arta@example.org", "language": "sq", "home_lat": 40.7239,
        "home_lon": 19.5561, "availability": "available", "quiet_start": time(23, 0),
        "quiet_end": time(6, 30), "consent_alerts": True,
    }  # fmt: skip
    return base | changes


def test_a_member_in_the_import_columns_reads_back_as_the_same_body() -> None:
    held = [("FIRST_AID", date(2030, 5, 1)), ("DRIVER", None)]
    cells = exporting.member_cells(_member(), held)
    body = row_to_body(dict(zip(CSV_COLUMNS, cells, strict=True)))
    assert body == {
        "section": "FIER", "full_name": "Arta Hoxha", "phone": "+355691234567",
        "email": "arta@example.org", "language": "sq", "availability": "available",
        "consent": {"alerts": True},
        "qualifications": [{"code": "DRIVER", "expires_at": None},
                           {"code": "FIRST_AID", "expires_at": "2030-05-01"}],
        "quiet_hours": {"start": "23:00", "end": "06:30"},
        "location": {"lat": "40.7239", "lon": "19.5561"},
    }  # fmt: skip


@given(
    st.floats(-90, 90, allow_nan=False),
    st.floats(-180, 180, allow_nan=False),
    st.booleans(),
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=1,
        max_size=40,
    ),
)
def test_positions_consent_and_names_survive_the_csv(
    lat: float, lon: float, consent: bool, name: str
) -> None:
    member = _member(home_lat=lat, home_lon=lon, consent_alerts=consent, full_name=name)
    text = exporting.to_csv([exporting.member_cells(member, [])])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    body = row_to_body(rows[0])
    assert float(body["location"]["lat"]) == lat and float(body["location"]["lon"]) == lon
    assert body["consent"] == {"alerts": consent}
    assert body["phone"] == "+355691234567"  # a phone is never taken for a formula
    # a name that would start a formula comes back with the apostrophe, all else as it was
    expected = "'" + name if name.startswith(exporting._FORMULA_START) else name
    assert body["full_name"] == expected.strip()


def _registry(text: str) -> list[dict[str, str]]:
    return sorted(csv.DictReader(io.StringIO(text)), key=lambda r: r["phone"])


async def test_export_then_import_gives_the_same_registry(
    members_service: MembersUnderTest,
) -> None:
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin, timezone="Europe/Tirane", language="sq")
        other = await make_section(admin)
        for email, sections in ((f"coord-{section.lower()}@example.org", [section]),
                                (f"coord-{other.lower()}@example.org", [other])):  # fmt: skip
            created = await admin.post(
                "/accounts",
                json={"email": email, "password": PASSWORD, "role": "coordinator",
                      "sections": sections},
            )  # fmt: skip
            assert created.status_code == 201, created.text
    token = await login(svc.url, f"coord-{section.lower()}@example.org", PASSWORD)
    stranger = await login(svc.url, f"coord-{other.lower()}@example.org", PASSWORD)

    people = [
        member_body(section, full_name="Arta Hoxha", phone=unique_phone()),
        member_body(
            section, full_name="Élodie Ça, \"la rapide\"", phone=unique_phone(),
            email="elodie@example.org", language="fr", quiet_hours=None,
            qualifications=[{"code": "FIRST_AID", "expires_at": "2031-01-31"},
                            {"code": "DRIVER", "expires_at": None}],
            location={"lat": 40.123456789012, "lon": 19.987654321098},
        ),
        member_body(
            section, full_name="Besnik Krasniqi", phone=unique_phone(), email=None,
            availability="unavailable", consent={"alerts": False}, location=None,
            qualifications=[],
        ),
    ]  # fmt: skip
    async with svc.client(token) as api:
        for body in people:
            created = await api.post(
                "/members", json={k: v for k, v in body.items() if v is not None}
            )
            assert created.status_code == 201, created.text
        # a member of another section is not in this section's file
        async with svc.admin() as admin:
            created = await admin.post("/members", json=member_body(other, phone=unique_phone()))
            assert created.status_code == 201, created.text

        exported = await api.get(f"/sections/{section}/members.csv")
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"].startswith("text/csv")
        first = exported.text
        registry = _registry(first)
        assert first.splitlines()[0] == ",".join(CSV_COLUMNS)
        assert len(registry) == 3
        by_name = {r["full_name"]: r for r in registry}
        assert by_name['Élodie Ça, "la rapide"']["qualifications"] == (
            "DRIVER;FIRST_AID:2031-01-31"
        )
        assert by_name["Besnik Krasniqi"]["consent_alerts"] == "false"
        assert by_name["Besnik Krasniqi"]["lat"] == ""

        # empty the section (erasure frees the phones), then import the export
        listed = (await api.get("/members", params={"section": section})).json()["items"]
        async with svc.admin() as admin:
            for member in listed:
                assert (await admin.delete(f"/members/{member['id']}")).status_code == 204
        emptied = await api.get(f"/sections/{section}/members.csv")
        assert _registry(emptied.text) == []
        imported = await api.post(
            "/members/import", content=first.encode(), headers={"Content-Type": "text/csv"}
        )
        assert imported.status_code == 201, imported.text
        assert imported.json()["imported"] == 3

        again = await api.get(f"/sections/{section}/members.csv")
        assert _registry(again.text) == registry

    # only the section's coordinators (and admins); bad codes name the field
    async with svc.client(stranger) as api:
        refused = await api.get(f"/sections/{section}/members.csv")
        assert refused.status_code == 403
        bad = await api.get("/sections/not-a-code/members.csv")
        assert bad.status_code == 422 and "code" in bad.text
    async with svc.admin() as admin:
        assert (await admin.get(f"/sections/{section}/members.csv")).status_code == 200
