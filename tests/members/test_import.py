"""CSV import: all rows or none, with a report naming each bad row, column and reason."""

from __future__ import annotations

import csv
import io

from services.members.importing import CSV_COLUMNS
from shared.events.topics import MEMBERS_STATE
from tests.members.conftest import MembersUnderTest, make_section, unique_phone, unique_section
from tests.support.kafka import read_records


def _row(section: str, i: int) -> dict[str, str]:
    return {
        "section": section,
        "full_name": f"Member {i}",
        "phone": unique_phone(),
        "email": f"m{i}@example.org",
        "language": ["en", "fr", "it", "sq"][i % 4],
        "qualifications": "FIRST_AID:2099-01-01;CPR" if i % 2 else "",
        "lat": f"{45 + (i % 100) / 1000:.4f}",
        "lon": "7.6",
        "availability": "available",
        "quiet_hours": "23:00-06:30" if i % 3 == 0 else "",
        "consent_alerts": "true",
    }


def _csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


async def test_one_bad_row_imports_nothing_then_the_fixed_file_imports_all(
    members_service: MembersUnderTest,
) -> None:
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin, unique_section())
        rows = [_row(section, i) for i in range(1001)]
        good_phone = rows[500]["phone"]
        rows[500]["phone"] = "12ab"
        refused = await admin.post(
            "/members/import", content=_csv(rows), headers={"Content-Type": "text/csv"}
        )
        assert refused.status_code == 422, refused.text
        report = refused.json()
        assert report["imported"] == 0
        assert [(e["row"], e["line"], e["column"]) for e in report["errors"]] == [
            (501, 502, "phone")
        ]
        assert report["errors"][0]["reason"]
        listed = await admin.get("/members", params={"section": section})
        assert listed.json()["total"] == 0

        rows[500]["phone"] = good_phone
        imported = await admin.post(
            "/members/import", files={"file": ("members.csv", _csv(rows), "text/csv")}
        )
        assert imported.status_code == 201, imported.text
        assert imported.json()["imported"] == 1001
        listed = (await admin.get("/members", params={"section": section, "limit": 1000})).json()
        assert listed["total"] == 1001
        one = next(m for m in listed["items"] if m["full_name"] == "Member 1")
        assert [q["code"] for q in one["qualifications"]] == ["CPR", "FIRST_AID"]

        again = await admin.post(
            "/members/import", content=_csv(rows[:3]), headers={"Content-Type": "text/csv"}
        )
        assert again.status_code == 422
        assert {(e["row"], e["column"]) for e in again.json()["errors"]} == {
            (1, "phone"),
            (2, "phone"),
            (3, "phone"),
        }

    ids = {m["id"] for m in listed["items"]}
    records = await read_records(
        svc.bootstrap,
        [svc.topic(MEMBERS_STATE)],
        until=lambda rs: len(ids & {r.key.decode() for r in rs if r.key}) >= 1000,
        timeout_s=60,
    )
    assert len(ids & {r.key.decode() for r in records if r.key}) >= 1000


async def test_report_names_every_bad_cell(members_service: MembersUnderTest) -> None:
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin, unique_section())
        rows = [_row(section, i) for i in range(6)]
        rows[1]["lat"] = "91"
        rows[2]["language"] = "tlh"
        rows[3]["qualifications"] = "NO_SUCH:2099-01-01"
        rows[4]["phone"] = rows[0]["phone"]
        rows[5]["section"] = "NOWHERE"
        r = await admin.post(
            "/members/import", content=_csv(rows), headers={"Content-Type": "text/csv"}
        )
        assert r.status_code == 422
        found = {(e["row"], e["column"]) for e in r.json()["errors"]}
        assert found == {(2, "lat"), (3, "language"), (5, "phone")}
        # database checks run once the file itself is clean
        rows[1]["lat"], rows[2]["language"], rows[4]["phone"] = "45", "it", unique_phone()
        r = await admin.post(
            "/members/import", content=_csv(rows), headers={"Content-Type": "text/csv"}
        )
        assert r.status_code == 422
        found = {(e["row"], e["column"]) for e in r.json()["errors"]}
        assert found == {(4, "qualifications"), (6, "section")}
        missing = await admin.post(
            "/members/import", content=b"full_name\nX\n", headers={"Content-Type": "text/csv"}
        )
        assert missing.status_code == 422
        assert {e["column"] for e in missing.json()["errors"]} == {"section", "phone"}
