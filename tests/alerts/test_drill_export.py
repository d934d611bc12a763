"""A drill's results as CSV (issue 12, exports): the import's overlapping columns first,
one line per member asked per occurrence, for the drill's coordinators only.

The drill's rows are written straight into the alerts schema of a real alerts process
(what the drill machinery leaves behind, tests/alerts/test_drills_flow.py drives that
machinery itself); the export is then read through the process's HTTP API."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.drill_exports import RESULT_COLUMNS, result_cells
from services.members.importing import CSV_COLUMNS
from tests.support.processes import start_service
from tests.support.tokens import TestKey, bearer

FIRED = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def test_the_overlapping_columns_carry_the_imports_names() -> None:
    assert RESULT_COLUMNS[:3] == ("section", "language", "qualifications")
    assert set(RESULT_COLUMNS[:3]) <= set(CSV_COLUMNS)
    cells = result_cells(
        {"id": "occ", "occurs_at": FIRED},
        {"section": "AL", "language": "sq", "qualifications": ["SAR", "FIRST_AID"],
         "member_id": "m", "status": "sent", "sent_at": FIRED,
         "answered_at": FIRED + timedelta(seconds=95), "answer_channel": "sms"},
    )  # fmt: skip
    assert cells[2] == "FIRST_AID;SAR"  # the import's CODE;CODE syntax
    assert cells[-1] == "95"


async def test_a_drills_results_export(
    alerts_env: dict[str, str], admin_engine: AsyncEngine, schema: str, tmp_path: Path
) -> None:
    key = TestKey()
    env = {**alerts_env, "MUSTER_JWKS_URL": key.write_jwks(tmp_path / "jwks.json")}
    drill_id, occurrence_id = uuid.uuid4(), uuid.uuid4()
    members = [uuid.uuid4() for _ in range(3)]
    async with admin_engine.begin() as conn:
        await conn.execute(
            text(
                f'INSERT INTO "{schema}".drills (id, sections, starts_at, status, created_by) '
                "VALUES (:id, ARRAY['AL'], :at, 'done', 'coord-al')"
            ),
            {"id": drill_id, "at": FIRED},
        )
        await conn.execute(
            text(
                f'INSERT INTO "{schema}".drill_occurrences '
                "(id, drill_id, occurs_at, fired_at, sections, asked) "
                "VALUES (:id, :drill, :at, :at, ARRAY['AL'], 3)"
            ),
            {"id": occurrence_id, "drill": drill_id, "at": FIRED},
        )
        for i, (member, status, answered, channel) in enumerate(
            [
                (members[0], "sent", FIRED + timedelta(minutes=4), "sms"),
                (members[1], "sent", FIRED + timedelta(minutes=20), "web"),
                (members[2], "failed", None, None),
            ]
        ):
            await conn.execute(
                text(
                    f'INSERT INTO "{schema}".drill_messages (occurrence_id, member_id, section, '
                    "qualifications, language, token, send_after, status, sent_at, answered_at, "
                    "answer_channel) VALUES (:occ, :member, 'AL', CAST(:quals AS jsonb), :lang, "
                    ":token, :at, :status, :sent, :answered, :channel)"
                ),
                {
                    "occ": occurrence_id, "member": member, "quals": '["FIRST_AID"]',
                    "lang": ("sq", "en", "it")[i], "token": uuid.uuid4().hex, "at": FIRED,
                    "status": status, "sent": FIRED if status == "sent" else None,
                    "answered": answered, "channel": channel,
                },
            )  # fmt: skip

    service = start_service("alerts", env, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            path = f"/drills/{drill_id}/results.csv"
            got = await client.get(path, headers=bearer(key.token("coordinator", ["AL"])))
            assert got.status_code == 200, got.text
            assert got.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(got.text)))
            assert [r["member_id"] for r in rows] == [str(m) for m in members]
            assert [(r["status"], r["answer_channel"], r["seconds_to_answer"]) for r in rows] == [
                ("sent", "sms", "240"), ("sent", "web", "1200"), ("failed", "", ""),
            ]  # fmt: skip
            assert {r["section"] for r in rows} == {"AL"}
            assert [r["language"] for r in rows] == ["sq", "en", "it"]
            assert {r["occurrence_id"] for r in rows} == {str(occurrence_id)}

            other = bearer(key.token("coordinator", ["IT"]))
            assert (await client.get(path, headers=other)).status_code == 404
            authority = bearer(key.token("authority", ["AL"]))
            assert (await client.get(path, headers=authority)).status_code == 403
            bad = await client.get("/drills/not-an-id/results.csv", headers=other)
            assert bad.status_code == 422 and "drill_id" in bad.text
    finally:
        service.stop()
