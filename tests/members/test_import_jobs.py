"""`POST /members/imports`: the CSV import as a background job with progress; refused
whole on one bad row, imported whole otherwise, never half-imported by a crash."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from services.members.import_jobs import progress_percent
from services.members.importing import CSV_COLUMNS
from tests.members.conftest import (
    MembersUnderTest,
    login,
    make_section,
    unique_phone,
    unique_section,
)
from tests.support.processes import start_service


def _rows(section: str, count: int) -> list[dict[str, str]]:
    return [
        {
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
        for i in range(count)
    ]


def _csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


async def _start(
    api: httpx.AsyncClient, rows: list[dict[str, str]], *, dry_run: bool = False
) -> str:
    r = await api.post(
        "/members/imports",
        params={"dry_run": str(dry_run).lower()},
        files={"file": ("members.csv", _csv(rows), "text/csv")},
    )
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "validating"
    assert r.headers["location"] == f"/members/imports/{r.json()['id']}"
    return str(r.json()["id"])


async def _follow(
    api: httpx.AsyncClient, job_id: str, *, timeout_s: float = 240.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll until the job ends: its last state and every state seen on the way."""
    seen: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        r = await api.get(f"/members/imports/{job_id}")
        assert r.status_code == 200, r.text
        seen.append(r.json())
        if r.json()["status"] not in ("validating", "importing"):
            return r.json(), seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"the import did not end: last {seen[-1]}")


async def _members_in(api: httpx.AsyncClient, section: str) -> int:
    return int((await api.get("/members", params={"section": section})).json()["total"])


_STATUS_ORDER = ["validating", "importing", "done"]


@given(
    total=st.integers(min_value=0, max_value=100_000),
    steps=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=20),
    dry_run=st.booleans(),
)
def test_progress_never_goes_back_and_ends_at_100(
    total: int, steps: list[tuple[float, float]], dry_run: bool
) -> None:
    """Validation counts up, then (a real import) insertion counts up: the percentage
    shown on the way only grows, stays below 100 until the job ends, then is 100."""
    validated = sorted(int(a * total) for a, _ in steps)
    inserted = sorted(int(b * total) for _, b in steps)
    states = [("validating", v, 0) for v in validated]
    if not dry_run:
        states += [("importing", total, i) for i in inserted]
    percents = [
        progress_percent(status=s, dry_run=dry_run, total=total, processed=p, imported=i)
        for s, p, i in states
    ]
    assert percents == sorted(percents)
    assert all(0 <= p < 100 for p in percents)
    for end in ("done", "refused"):
        assert (
            progress_percent(
                status=end, dry_run=dry_run, total=total, processed=total, imported=total
            )
            == 100
        )


async def test_one_bad_row_in_1001_refuses_the_whole_file(
    members_service: MembersUnderTest,
) -> None:
    async with members_service.admin() as admin:
        section = await make_section(admin, unique_section())
        rows = _rows(section, 1001)
        rows[500]["phone"] = "12ab"
        job, _ = await _follow(admin, await _start(admin, rows))
        assert job["status"] == "refused"
        assert job["total"] == job["processed"] == 1001
        assert job["imported"] == 0 and job["percent"] == 100
        assert [(e["row"], e["line"], e["column"]) for e in job["errors"]] == [(501, 502, "phone")]
        assert job["errors"][0]["reason"]
        assert job["detail"].startswith("nothing imported")
        assert job["finished_at"]
        assert await _members_in(admin, section) == 0

        # a check that needs the database refuses the same way (row and column named)
        rows[500]["phone"] = unique_phone()
        rows[7]["section"] = "NOWHERE"
        job, _ = await _follow(admin, await _start(admin, rows))
        assert job["status"] == "refused"
        assert [(e["row"], e["column"]) for e in job["errors"]] == [(8, "section")]
        assert await _members_in(admin, section) == 0


async def test_a_dry_run_reports_and_imports_nothing(members_service: MembersUnderTest) -> None:
    async with members_service.admin() as admin:
        section = await make_section(admin, unique_section())
        job, _ = await _follow(admin, await _start(admin, _rows(section, 300), dry_run=True))
        assert job["status"] == "done" and job["dry_run"] is True
        assert (job["total"], job["processed"], job["imported"]) == (300, 300, 0)
        assert job["errors"] == [] and job["sections"] == [section]
        assert await _members_in(admin, section) == 0


async def test_a_good_file_imports_whole_with_progress(members_service: MembersUnderTest) -> None:
    async with members_service.admin() as admin:
        section = await make_section(admin, unique_section())
        job, seen = await _follow(admin, await _start(admin, _rows(section, 2000)))
        assert job["status"] == "done", job
        assert job["total"] == job["processed"] == job["imported"] == 2000
        assert job["percent"] == 100 and job["errors"] == []
        assert await _members_in(admin, section) == 2000
        percents = [s["percent"] for s in seen]
        assert percents == sorted(percents), percents
        # progress was visible on the way, not only at the end
        assert any(0 < p < 100 for p in percents), percents
        statuses = [s["status"] for s in seen]
        assert statuses == sorted(statuses, key=_STATUS_ORDER.index), statuses


async def test_jobs_are_seen_by_their_owner_and_admins_only(
    members_service: MembersUnderTest,
) -> None:
    svc = members_service
    async with svc.admin() as admin:
        mine, theirs = await make_section(admin), await make_section(admin)
        for email, section in (("imp-a@example.org", mine), ("imp-b@example.org", theirs)):
            r = await admin.post(
                "/accounts",
                json={
                    "email": email,
                    "password": "twelve chars at least",
                    "role": "coordinator",
                    "sections": [section],
                },
            )
            assert r.status_code in (201, 409), r.text
        r = await admin.post(
            "/accounts",
            json={
                "email": "imp-authority@example.org",
                "password": "twelve chars at least",
                "role": "authority",
                "sections": [mine],
            },
        )
        assert r.status_code in (201, 409), r.text
    a = await login(svc.url, "imp-a@example.org", "twelve chars at least")
    b = await login(svc.url, "imp-b@example.org", "twelve chars at least")
    authority = await login(svc.url, "imp-authority@example.org", "twelve chars at least")
    async with svc.client(a) as api_a, svc.client(b) as api_b, svc.admin() as admin:
        # a coordinator's file naming another section is refused row by row
        rows = _rows(mine, 3)
        rows[1]["section"] = theirs
        job_id = await _start(api_a, rows)
        job, _ = await _follow(api_a, job_id)
        assert job["status"] == "refused"
        assert [(e["row"], e["column"]) for e in job["errors"]] == [(2, "section")]
        assert (await api_b.get(f"/members/imports/{job_id}")).status_code == 404
        assert (await admin.get(f"/members/imports/{job_id}")).status_code == 200
        assert (await api_a.get(f"/members/imports/{uuid.uuid4()}")).status_code == 404
        bad = await api_a.get("/members/imports/not-a-job")
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "job_id"]
    async with svc.client(authority) as api:
        assert (await api.get(f"/members/imports/{job_id}")).status_code == 403
        refused = await api.post(
            "/members/imports", content=_csv(_rows(mine, 1)), headers={"Content-Type": "text/csv"}
        )
        assert refused.status_code == 403
    async with svc.admin() as admin:
        not_utf8 = await admin.post(
            "/members/imports", content=b"\xff\xfe\x00", headers={"Content-Type": "text/csv"}
        )
        assert not_utf8.status_code == 422
        assert not_utf8.json()["errors"][0]["column"] == "file"


async def test_a_job_cut_off_by_a_crash_is_failed_at_restart_with_nothing_imported(
    members_service: MembersUnderTest, module_tmp: Path
) -> None:
    """SIGKILL while the rows are being inserted (some batches written, uncommitted)."""
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin, unique_section())
        job_id = await _start(admin, _rows(section, 8000))
        state: dict[str, Any] = {}
        deadline = asyncio.get_running_loop().time() + 240
        while asyncio.get_running_loop().time() < deadline:
            state = (await admin.get(f"/members/imports/{job_id}")).json()
            if state["status"] != "validating":
                break
            await asyncio.sleep(0.02)
        while state["status"] == "importing" and state["imported"] == 0:
            state = (await admin.get(f"/members/imports/{job_id}")).json()
            await asyncio.sleep(0.01)
        assert state["status"] == "importing", state
        svc.process.kill()
    # the fixture stops whatever process the service object holds at the end
    svc.process = start_service("members", svc.env, module_tmp)
    async with svc.admin() as admin:
        job = (await admin.get(f"/members/imports/{job_id}")).json()
        assert job["status"] == "failed", job
        assert "nothing was imported" in job["detail"]
        assert job["finished_at"]
        assert await _members_in(admin, section) == 0
